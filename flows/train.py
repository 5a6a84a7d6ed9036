"""The training flow: a training spec run as one Prefect task, logs and artifacts in Prefect.

The loop itself is `pipelines.training.train` (plain function, callable without a server).
"""
from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from pipelines.train_spec import load_train_spec
from pipelines.training import train


@task(name="train", cache_policy=NO_CACHE)
def train_task(spec_path: str, device: str | None) -> dict[str, Any]:
    logger = get_run_logger()
    spec = load_train_spec(spec_path)
    return train(spec, device=device, progress=logger.info)


@flow(name="gdl-train")
def train_flow(spec_path: str, device: str | None = None) -> dict[str, Any]:
    """Train the spec's model on its dataset; resumes from the run's last checkpoint."""
    result = train_task(spec_path, device)
    lines = "\n".join(f"- {k}: {v}" for k, v in result.items() if not isinstance(v, (dict, list)))
    create_markdown_artifact(f"# gdl train\n\n{lines}\n", key="gdl-train-" + "".join(
        c if c.isalnum() else "-" for c in str(result.get("name", "run")).lower()),
        description="training result vs trivial baseline")
    return result
