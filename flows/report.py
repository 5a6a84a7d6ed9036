"""Printing datasets and runs for people (rich tables on a terminal, plain text otherwise)."""
from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table


def _shape(info: dict[str, Any]) -> str:
    stats = info.get("stats") or {}
    shape = stats.get("shape")
    if info["encoding"] in ("scalar", "string"):
        return "()"
    if shape is None:
        return "?"
    return "(" + ", ".join("*" if d is None else str(d) for d in shape) + ")"


def _num(x: Any) -> str:
    if x is None:
        return ""
    return f"{x:.4g}" if isinstance(x, float) else str(x)


def print_dataset(info: dict[str, Any], console: Console | None = None) -> None:
    console = console or Console()
    console.print(f"[bold]{info['name']}[/] ({info['domain']}) at {info['uri']}")
    console.print(f"version {info['version']} (kept: {', '.join(map(str, info['versions']))}), "
                  f"created {info['created']}; "
                  f"{info['samples']} samples, {info['failed']} failed; {info['shards']} shards, "
                  f"{info['bytes_on_disk'] / 1e6:.2f} MB")
    for op in info["ops"]:
        params = {k: v for k, v in op["params"].items() if v is not None}
        console.print(f"  op {op['name']} v{op['version']}: {params}")
    table = Table("column", "dtype", "shape (* varies)", "min", "max", "NaN")
    for name, col in info["columns"].items():
        st = col.get("stats") or {}
        table.add_row(name, col["dtype"], _shape(col), _num(st.get("min")), _num(st.get("max")),
                      _num(st.get("nan_count")))
    console.print(table)
    if info["errors_by_cause"]:
        errors = Table("failed at: kind", "samples", "first sources")
        for cause, entry in info["errors_by_cause"].items():
            errors.add_row(cause, str(entry["count"]),
                           "\n".join(f"{e['source']}: {e['message']}" for e in entry["examples"]))
        console.print(errors)


def print_demo(result: dict[str, Any], console: Console | None = None) -> None:
    console = console or Console()
    table = Table("dataset", "samples", "failed", "columns", "seconds", title="gdl demo")
    for d in result["datasets"]:
        arrays = [c for c in d["columns"] if c not in ("sample_id", "source", "domain")]
        table.add_row(d["name"], str(d["samples"]), str(d["failed"]),
                      ", ".join(arrays[:8]) + (f" (+{len(arrays) - 8})" if len(arrays) > 8 else ""),
                      f"{d['wall_seconds']:.1f}")
    console.print(table)
    t = result.get("training")
    if t:
        console.print(f"trained {t['model']} on {t['dataset']} for {t['epochs']} epochs: held-out {t['metric']} "
                      f"{t['model_metric']:.3f} vs {t['baseline_metric']:.3f} for the trivial baseline "
                      f"({t['wall_seconds']:.1f} s); run folder {t['run']}", soft_wrap=True)
    console.print(f"demo finished in {result['wall_seconds']:.1f} s; datasets under "
                  f"{result['workdir']}/datasets")
    for d in result["datasets"]:
        console.print(f"  gdl inspect {d['output']}", soft_wrap=True)


def print_versions(rows: list[dict[str, Any]], console: Console | None = None) -> None:
    console = console or Console()
    table = Table("version", "created", "samples", "failed", "ops", title="kept versions")
    for r in rows:
        table.add_row(str(r["version"]), r["created"], str(r["samples"]), str(r["failed"]), ", ".join(r["ops"]))
    console.print(table)
