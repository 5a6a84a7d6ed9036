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
    low, high = stats.get("shape_min"), stats.get("shape_max")
    if low is None or high is None:
        return "(" + ", ".join("*" if d is None else str(d) for d in shape) + ")"
    return "(" + ", ".join(str(d) if d is not None else f"{a}–{b}" for d, a, b in zip(shape, low, high)) + ")"


def _num(x: Any) -> str:
    if x is None:
        return ""
    return f"{x:.4g}" if isinstance(x, float) else str(x)


def print_dataset(info: dict[str, Any], console: Console | None = None) -> None:
    console = console or Console()
    run = info.get("run") or {}
    console.print(f"[bold]{info['name']}[/] ({info['domain']}) at {info['uri']}")
    console.print(f"version {info['version']} (kept: {', '.join(map(str, info['versions']))}), "
                  f"created {info['created']}; "
                  f"{info['samples']} samples, {info['failed']} failed; {info['shards']} shards, "
                  f"{info['bytes_on_disk'] / 1e6:.2f} MB")
    _print_files(console, run, info.get("skipped_examples") or [], info["domain"])
    for line in info.get("changes") or []:
        console.print(f"  changes {line}", soft_wrap=True)
    seconds = run.get("seconds_by_stage") or {}
    for op in info["ops"]:
        # Recorded conventions (long fixed strings) are in --json; here they would bury the rest.
        params = {k: v for k, v in op["params"].items() if v is not None and not (isinstance(v, str) and len(v) > 40)}
        took = f" ({seconds[op['name']]:.2f} s summed over workers)" if op["name"] in seconds else ""
        console.print(f"  op {op['name']} v{op['version']}{took}: {params}")
    console.print(_columns_table(info["columns"]))
    _print_warnings(console, info)
    if info["errors_by_cause"]:
        errors = Table("failed at: kind", "samples", "first sources")
        for cause, entry in info["errors_by_cause"].items():
            errors.add_row(cause, str(entry["count"]),
                           "\n".join(f"{e['source']}: {e['message']}" for e in entry["examples"]))
        console.print(errors)


def _print_files(console: Console, run: dict[str, Any], skipped: list[str], domain: str) -> None:
    if not run:
        return
    line = f"  files: {run.get('files', 0)} read, {run.get('skipped_files', 0)} skipped (not a {domain} format)"
    if skipped:
        line += ", e.g. " + ", ".join(skipped)
    stages = {k: v for k, v in (run.get("seconds_by_stage") or {}).items()}
    if stages:
        line += "; seconds: " + ", ".join(f"{k} {v:.2f}" for k, v in stages.items())
    console.print(line, soft_wrap=True)


def _columns_table(columns: dict[str, Any]) -> Table:
    table = Table("column", "dtype", "shape (a–b: varies)", "min", "max", "NaN", "inf")
    for name, col in columns.items():
        st = col.get("stats") or {}
        table.add_row(name, col["dtype"], _shape(col), _num(st.get("min")), _num(st.get("max")),
                      _num(st.get("nan_count")), _num(st.get("inf_count")))
    return table


def _print_warnings(console: Console, info: dict[str, Any]) -> None:
    inf = ((info["columns"].get("geo_dist") or {}).get("stats") or {}).get("inf_count")
    if inf:
        console.print(f"[yellow]warning[/]: geo_dist holds {inf} inf values (points unreachable from "
                      f"a source: those samples have several connected components)")
    several = info.get("several_components")
    if several and several["count"]:
        console.print(f"[yellow]warning[/]: {several['count']} samples have several connected components "
                      f"(one zero eigenvalue each), e.g. {', '.join(several['examples'])}", soft_wrap=True)


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
    table = Table("version", "created", "samples", "failed", "ops", "changed", title="kept versions")
    for r in rows:
        table.add_row(str(r["version"]), r["created"], str(r["samples"]), str(r["failed"]), ", ".join(r["ops"]),
                      "\n".join(r.get("changes", [])))
    console.print(table)
