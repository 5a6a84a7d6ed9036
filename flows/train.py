"""The training flow: a training spec run as one Prefect task, logs and artifacts in Prefect.

The loop itself is `pipelines.training.train` (plain function, callable without a server), run
on `processes` data-parallel processes by `pipelines.train_launch.launch` (default: the spec's
`processes`); a deployment asks for N with the parameter `processes`.
The run's metrics table and its loss/metric plot are attached to the flow run as an artifact.
"""
from __future__ import annotations

import base64
from typing import Any

import fsspec
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from pipelines.progress import ProgressReporter
from pipelines.train_spec import load_train_spec
from pipelines.train_launch import launch


@task(name="train", cache_policy=NO_CACHE)
def train_task(spec_path: str, device: str | None, processes: int | None = None) -> dict[str, Any]:
    logger = get_run_logger()
    spec = load_train_spec(spec_path)
    bar: list[ProgressReporter] = []

    def on_epoch(row: dict[str, Any]) -> None:
        if not bar:  # created at the first epoch run, so a resumed run's ETA counts what is left
            bar.append(ProgressReporter(row["epochs"] - row["epoch"] + 1, label=spec.name,
                                        unit="epochs", log=logger.info, every=10.0))
        logger.debug("epoch %s/%s: %s", row["epoch"], row["epochs"],
                     ", ".join(f"{k}={v:.4g}" for k, v in row.items() if isinstance(v, float)))
        bar[0].item_done()

    try:
        return launch(spec, processes=processes, device=device, progress=on_epoch)
    finally:
        if bar:
            bar[0].close()


def _plot_markdown(run_folder: str) -> str:
    """The run's metrics.png inline (a data URI), or a note where it should have been."""
    try:
        with fsspec.open(f"{run_folder.rstrip('/')}/metrics.png", "rb") as fh:
            data = base64.b64encode(fh.read()).decode()
    except FileNotFoundError:
        return "(no metrics.png was written)"
    return f"![training curves](data:image/png;base64,{data})"


@flow(name="gdl-train")
def train_flow(spec_path: str, device: str | None = None, processes: int | None = None) -> dict[str, Any]:
    """Train the spec's model on its dataset on `processes` processes (None: the spec's);
    resumes from the run's last checkpoint."""
    result = train_task(spec_path, device, processes)
    lines = "\n".join(f"| {k} | {v} |" for k, v in result.items() if not isinstance(v, (dict, list)))
    create_markdown_artifact(
        f"# gdl train: {result.get('name')}\n\n| key | value |\n|---|---|\n{lines}\n\n"
        f"{_plot_markdown(result['run'])}\n",
        key="gdl-train-" + "".join(c if c.isalnum() else "-" for c in str(result.get("name", "run")).lower()),
        description="held-out metric vs the trivial baseline, and the training curves")
    return result
