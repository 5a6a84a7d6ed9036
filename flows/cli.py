"""The `gdl` command. Each subcommand is a thin shell over a flow or a plain function.

Exit status: 0 the command completed (a preprocess run that recorded failed samples still
completed: the summary says how many); 1 the run itself failed; 2 bad usage or an invalid spec;
3 `--fail-on-errors` was given and at least one sample failed.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import traceback

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_SAMPLES_FAILED = 0, 1, 2, 3


def _prefect_defaults() -> None:
    # Keep the embedded default quiet and private: no analytics, no update checks.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO")


def cmd_preprocess(args) -> int:
    from flows.preprocess import preprocess_flow
    summary = preprocess_flow(args.spec, source=args.source, output=args.output,
                              dask_address=args.dask_address, retry_errors=args.retry_errors,
                              wait=args.wait)
    print(_summary_line(summary))
    if summary["failed"] and args.fail_on_errors:
        return EXIT_SAMPLES_FAILED
    return EXIT_OK


def cmd_train(args) -> int:
    from flows.train import train_flow
    result = train_flow(args.spec, device=args.device, processes=args.processes)
    print(json.dumps(result, indent=2, default=str))
    return EXIT_OK


def cmd_serve(args) -> int:
    from flows.serve import plan_deployments, serve_specs
    for p in plan_deployments(args.specs):
        when = (p.schedule.cron or f"every {p.schedule.interval_seconds:g} s") if p.schedule else "on demand"
        then = f", then {', '.join(p.parameters['then'])}" if p.parameters.get("then") else ""
        print(f"deployment gdl-{p.flow}/{p.name}: {when}{then}")
    serve_specs(args.specs, limit=args.limit)
    return EXIT_OK


def cmd_show(args) -> int:
    from gdl_data import open_dataset
    from gdl_data.viz import parse_column, render_sample
    ds = open_dataset(args.dataset, version=args.version)
    column, component = parse_column(args.column) if args.column else (None, None)
    out = render_sample(ds[args.index], column, component, args.out, grid=args.grid, glyphs=args.glyphs)
    print(f"wrote {out}")
    return EXIT_OK


def cmd_inspect(args) -> int:
    from flows.report import print_dataset, print_versions
    from pipelines.summary import describe_dataset, list_dataset_versions
    if args.versions:
        rows = list_dataset_versions(args.dataset)
        print(json.dumps(rows, indent=2)) if args.json else print_versions(rows)
        return EXIT_OK
    info = describe_dataset(args.dataset, version=args.version)
    if args.json:
        print(json.dumps(info, indent=2, default=str))
    else:
        print_dataset(info)
    return EXIT_OK


def cmd_demo(args) -> int:
    from flows.demo import demo_flow
    from flows.report import print_demo
    result = demo_flow(os.path.abspath(args.workdir))
    print_demo(result)
    return EXIT_SAMPLES_FAILED if args.fail_on_errors and any(r["failed"] for r in result["datasets"]) else EXIT_OK


def _summary_line(summary: dict) -> str:
    line = (f"{summary['name']}: {summary['samples']} samples written, {summary['failed']} failed "
            f"-> {summary['output']} (version {summary['version']}, {summary['wall_seconds']:.1f} s)")
    if summary["failed"]:
        causes = ", ".join(f"{k} x{v}" for k, v in summary["errors_by_cause"].items())
        line += f"\n  failures: {causes}\n  details: gdl inspect {summary['output']}"
    return line


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gdl", description="Geometric data pipeline for GDL.")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on failure")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("preprocess", help="run a pipeline spec: raw files -> Parquet dataset")
    p.add_argument("spec", help="pipeline spec YAML")
    p.add_argument("--source", help="override the spec's source (folder, glob or URI)")
    p.add_argument("--output", help="override the spec's output dataset URI")
    p.add_argument("--dask-address", help="existing Dask scheduler, e.g. tcp://127.0.0.1:8786")
    p.add_argument("--fail-on-errors", action="store_true", help="exit 3 if any sample failed")
    p.add_argument("--retry-errors", action="store_true", help="recompute samples that failed before")
    p.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                   help="wait this long for another writer of the dataset instead of failing")
    p.set_defaults(func=cmd_preprocess)

    p = sub.add_parser("train", help="run a training spec (resumes from its last checkpoint)")
    p.add_argument("spec", help="training spec YAML")
    p.add_argument("--device", help="cpu, cuda, cuda:1 ...; default: cuda when available")
    p.add_argument("--processes", type=int, metavar="N",
                   help="data-parallel processes (gloo on CPU, one GPU each with NCCL); default: the spec's")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("serve", help="register deployments for specs with their schedules and serve them")
    p.add_argument("specs", nargs="+", help="spec files or folders of specs (preprocessing and training)")
    p.add_argument("--limit", type=int, help="at most this many flow runs at once")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("show", help="render one sample to PNG (eigenfunctions, distances, maps, graphs)")
    p.add_argument("dataset", help="dataset folder or URI")
    p.add_argument("index", nargs="?", type=int, default=0, help="sample index (default 0)")
    p.add_argument("--column", help="NAME or NAME:j, e.g. evecs:3, geo_dist:0, values")
    p.add_argument("--out", default="gdl-show.png", help="output PNG path")
    p.add_argument("--grid", type=int, default=0, help="show the first N components side by side")
    p.add_argument("--glyphs", choices=["normals", "frames"], help="draw normals or frames (meshes)")
    p.add_argument("--version", type=int, help="a kept version instead of the current one")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("inspect", help="describe a dataset: samples, columns, ops, errors")
    p.add_argument("dataset", help="dataset folder or URI")
    p.add_argument("--version", type=int, help="a kept version instead of the current one")
    p.add_argument("--versions", action="store_true", help="list the kept versions")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("demo", help="the whole path on bundled sample data of all four domains")
    p.add_argument("--workdir", default="gdl-demo", help="where raw data, specs and datasets go")
    p.add_argument("--fail-on-errors", action="store_true", help="exit 3 if any sample failed")
    p.set_defaults(func=cmd_demo)
    return parser


def _quiet_libraries() -> None:
    # Dask's scheduler runs in this process and logs every worker start at INFO.
    import logging
    for name in ("distributed", "distributed.scheduler", "distributed.nanny", "distributed.core"):
        logging.getLogger(name).setLevel(logging.WARNING)


def _flush_prefect_logs() -> None:
    # Send buffered run logs while the (temporary) API server is still up.
    try:
        from prefect.logging.handlers import APILogHandler
        APILogHandler.flush()
    except Exception:
        pass


def main(argv: list[str] | None = None) -> int:
    _prefect_defaults()
    args = build_parser().parse_args(argv)
    _quiet_libraries()
    try:
        return _run(args)
    finally:
        _flush_prefect_logs()


def _run(args) -> int:
    from gdl_data.errors import GdlError
    from storage import DatasetLocked
    try:
        return args.func(args)
    except (GdlError, FileNotFoundError, DatasetLocked) as exc:
        print(f"gdl {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"gdl {args.command}: interrupted", file=sys.stderr)
        return EXIT_FAILED
    except Exception as exc:  # the run itself failed: one line, traceback on request
        if args.debug:
            traceback.print_exc()
        print(f"gdl {args.command}: the run failed: {type(exc).__name__}: {exc}"
              + ("" if args.debug else "  (rerun with --debug for the traceback)"), file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
