"""The `gdl` command. Each subcommand is a thin shell over a flow or a plain function.

Exit status: 0 the command completed (a preprocess run that recorded failed samples still
completed: the summary says how many); 1 the run itself failed; 2 bad usage or an invalid spec;
3 `--fail-on-errors` was given and at least one sample failed.
"""
from __future__ import annotations

import os
import sys

# argparse, json and traceback are imported where used: a command handed to the warm server
# (flows/warm_client.py) needs none of them, and they are a third of its start-up imports.

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_SAMPLES_FAILED = 0, 1, 2, 3
EXIT_INTERRUPTED = 130          # the shell's convention for a run stopped by a signal


def _prefect_defaults() -> None:
    # Keep the embedded default quiet and private: no analytics, no update checks.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO")
    # A temporary server on a loaded 2-core machine took over 20 s (Prefect's default limit) to
    # answer; the run then failed before doing any work.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")


def _report(command: str, problems: list[str]) -> int:
    """Print each problem on its own line; EXIT_USAGE when there is one."""
    for line in problems:
        print(f"gdl {command}: error: {line}", file=sys.stderr)
    return EXIT_USAGE if problems else EXIT_OK


def cmd_validate(args) -> int:
    from pipelines.validate import expand, validate_specs
    problems = validate_specs(args.specs)
    if not problems:
        print(f"{len(expand(args.specs))} spec(s) valid")
    return _report("validate", problems)


def cmd_preprocess(args) -> int:
    from pipelines.validate import checked_spec
    problems, spec = checked_spec(args.spec, source=args.source, kind="preprocess")
    if _report("preprocess", problems):
        return EXIT_USAGE                 # before Prefect, Dask or any folder is created
    overrides = {"source": args.source, "output": args.output, "dask_address": args.dask_address,
                 "workers": args.workers, "worker_memory": args.worker_memory}
    if args.prefect or os.environ.get("PREFECT_API_URL"):
        from flows.preprocess import preprocess_flow
        summary = preprocess_flow(args.spec, retry_errors=args.retry_errors, wait=args.wait,
                                  **{k: overrides[k] for k in ("source", "output", "dask_address")})
    else:
        summary = _preprocess_here(args, spec.with_overrides(**overrides))
    print(_summary_line(summary))
    if summary["failed"] and args.fail_on_errors:
        return EXIT_SAMPLES_FAILED
    return EXIT_OK


def _preprocess_here(args, spec) -> dict:
    """The same plan/compute/commit as the flow, without a Prefect server: a temporary one costs
    4-7 s and keeps nothing a user looks at afterwards (bench/RESULTS.md, "Scale")."""
    import logging

    from pipelines.execute import run_pipeline
    from pipelines.summary import RunSummary
    logging.basicConfig(format="%(asctime)s | %(message)s", datefmt="%H:%M:%S", level=logging.INFO)
    manifest = run_pipeline(spec, retry_errors=args.retry_errors, wait=args.wait,
                            log=logging.getLogger("gdl").info)
    return RunSummary.from_manifest(spec.output, manifest).to_dict()


def cmd_train(args) -> int:
    from pipelines.validate import spec_problems
    if _report("train", spec_problems(args.spec, check_source=False, kind="train")):
        return EXIT_USAGE
    import json

    from flows.train import train_flow
    result = train_flow(args.spec, device=args.device, processes=args.processes)
    print(json.dumps(result, indent=2, default=str))
    return EXIT_OK


def cmd_serve(args) -> int:
    from pipelines.validate import validate_specs
    if _report("serve", validate_specs(args.specs, check_source=False)):
        return EXIT_USAGE
    from flows.serve import plan_deployments, serve_specs
    for p in plan_deployments(args.specs):
        when = (p.schedule.cron or f"every {p.schedule.interval_seconds:g} s") if p.schedule else "on demand"
        then = f", then {', '.join(p.parameters['then'])}" if p.parameters.get("then") else ""
        print(f"deployment gdl-{p.flow}/{p.name}: {when}{then}")
    serve_specs(args.specs, limit=args.limit)
    return EXIT_OK


def cmd_show(args) -> int:
    from gdl_data import open_dataset
    from gdl_data.errors import GdlError
    from gdl_data.viz import parse_column, render_sample
    ds = open_dataset(args.dataset, version=args.version)
    if not -len(ds) <= args.index < len(ds):
        raise GdlError(f"sample index {args.index} is out of range: {args.dataset} (version "
                       f"{ds.version}) has {len(ds)} samples, 0 to {len(ds) - 1}")
    column, component = parse_column(args.column) if args.column else (None, None)
    out = render_sample(ds[args.index], column, component, args.out, grid=args.grid, glyphs=args.glyphs)
    print(f"wrote {out}")
    return EXIT_OK


def cmd_inspect(args) -> int:
    import json

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
    if summary.get("published", True):
        line = (f"{summary['name']}: {summary['samples']} samples written, {summary['failed']} failed "
                f"-> {summary['output']} (version {summary['version']}, {summary['wall_seconds']:.1f} s)")
    else:
        line = (f"{summary['name']}: nothing changed, no new version: {summary['output']} is still version "
                f"{summary['version']} ({summary['samples']} samples, {summary['failed']} failed; "
                f"{summary['wall_seconds']:.1f} s)")
    if summary["failed"]:
        causes = ", ".join(f"{k} x{v}" for k, v in summary["errors_by_cause"].items())
        line += f"\n  failures: {causes}\n  details: gdl inspect {summary['output']}"
    return line


def build_parser():
    """The `gdl` argument parser (argparse.ArgumentParser)."""
    import argparse
    parser = argparse.ArgumentParser(prog="gdl", description="Geometric data pipeline for GDL.")
    parser.add_argument("--debug", action="store_true",
                        help="show full tracebacks on failure (accepted anywhere on the line)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("validate", help="check specs (and their sources) without running anything")
    p.add_argument("specs", nargs="+", help="spec files or folders of specs (preprocessing and training)")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("preprocess", help="run a pipeline spec: raw files -> Parquet dataset")
    p.add_argument("spec", help="pipeline spec YAML")
    p.add_argument("--source", help="override the spec's source (folder, glob or URI)")
    p.add_argument("--output", help="override the spec's output dataset URI")
    p.add_argument("--dask-address", help="existing Dask scheduler, e.g. tcp://127.0.0.1:8786")
    p.add_argument("--workers", type=int, help="worker processes of the temporary cluster (default: one per core)")
    p.add_argument("--worker-memory", help="memory budget per worker, e.g. 4GB (default: RAM / workers)")
    p.add_argument("--prefect", action="store_true",
                   help="run as a Prefect flow on a temporary server (automatic when PREFECT_API_URL is set)")
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

    _add_dataset_commands(sub)

    p = sub.add_parser("demo", help="the whole path on bundled sample data of all four domains")
    p.add_argument("--workdir", default="gdl-demo", help="where raw data, specs and datasets go")
    p.add_argument("--fail-on-errors", action="store_true", help="exit 3 if any sample failed")
    p.set_defaults(func=cmd_demo)

    from flows.warm import add_warm_parser
    add_warm_parser(sub)
    return parser


_PARSER = None


def parser():
    """`build_parser()`, built once per process: 5-8 ms (argparse looks up a translation of every
    help string) that the warm server pays before it forks (flows/warm_server.py `preload`), not
    each command; parsing leaves the parser as it was."""
    global _PARSER
    if _PARSER is None:
        _PARSER = build_parser()
    return _PARSER


def _add_dataset_commands(sub) -> None:
    """`gdl show` and `gdl inspect`: the commands that read a dataset."""
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


def _quiet_libraries() -> None:
    # Dask's scheduler runs in this process and logs every worker start at INFO. Only a level
    # that differs is set: each setLevel clears the cache of all ~120 loggers (0.7 ms for four
    # in a warm server's child, whose server set them before forking).
    import logging
    for name in ("distributed", "distributed.scheduler", "distributed.nanny", "distributed.core"):
        logger = logging.getLogger(name)
        if logger.level != logging.WARNING:
            logger.setLevel(logging.WARNING)


def _quiet_teardown() -> None:
    """After a stop signal, only CRITICAL from Dask, Tornado and asyncio: a cluster torn down
    mid-flight logs the callbacks and tasks the stop cut short, some as tracebacks (one from
    distributed's own `cancel`, a NameError, reached CI's stderr), and the stop is reported in
    one line (`_run`)."""
    import logging
    names = [n for n in list(logging.root.manager.loggerDict) if n.split(".")[0] in ("distributed", "tornado", "asyncio")]
    for name in {"distributed", "tornado", "asyncio", *names}:
        logging.getLogger(name).setLevel(logging.CRITICAL)


def _flush_prefect_logs() -> None:
    # Send buffered run logs while the (temporary) API server is still up; a command that
    # never started Prefect (validate, inspect, a refused spec) must not pay for importing it.
    if "prefect" not in sys.modules:
        return
    try:
        from prefect.logging.handlers import APILogHandler
        APILogHandler.flush()
    except Exception:
        pass


class _Stop:
    """SIGTERM (timeout, Slurm, Kubernetes) unwinds like Ctrl-C: the cluster and any temporary
    server are closed, the lock released, finished shards kept for the next run to resume.

    A KeyboardInterrupt raised where Python only prints it (a __del__ or weakref callback the
    signal happened to land in) or where a library swallows it is lost, and the run went on to
    its end (1 SIGTERM in ~50 here, landing while a LocalCluster started). So until the command
    has stopped, the signal is sent to it again every RESEND_SECONDS (a real signal: only one
    wakes a blocking call), under a lock that `end` takes before it puts back the handlers the
    command replaced (a notebook's Ctrl-C), so none arrives to a default handler."""

    RESEND_SECONDS = 5.0      # well past a stop's own clean-up (< 0.3 s here), within the 10 s a stop may take

    def __init__(self):
        import signal
        import threading
        self.signum: int | None = None
        self.done = False
        self.lock = threading.Lock()
        self.previous = {s: signal.signal(s, self.handle) for s in (signal.SIGTERM, signal.SIGINT)}

    def handle(self, signum, _frame) -> None:
        import signal
        if self.signum is None:
            import threading
            self.signum = signum
            _quiet_teardown()
            threading.Thread(target=self.resend, name="gdl-resend-stop", daemon=True).start()
        raise KeyboardInterrupt(signal.Signals(signum).name)

    def resend(self) -> None:
        import signal
        import threading
        import time
        while True:
            time.sleep(self.RESEND_SECONDS)
            with self.lock:
                if self.done:
                    return
                signal.pthread_kill(threading.main_thread().ident, self.signum)

    def end(self) -> None:
        import signal
        with self.lock:
            self.done = True
            for signum, handler in self.previous.items():
                signal.signal(signum, handler)


_STOP: _Stop | None = None


def _stop_on_sigterm() -> None:
    """SIGTERM and SIGINT raise KeyboardInterrupt in this command until it has stopped (_Stop)."""
    global _STOP
    _STOP = _Stop()


def _stopped() -> None:
    """The command has stopped (its KeyboardInterrupt reached `_run`) or ended: no resending,
    the handlers it replaced back."""
    if _STOP is not None and not _STOP.done:
        _STOP.end()


def main(argv: list[str] | None = None) -> int:
    _prefect_defaults()
    _stop_on_sigterm()
    argv = list(sys.argv[1:] if argv is None else argv)
    # --debug anywhere (`gdl show DS --debug` as well as `gdl --debug show DS`).
    debug = "--debug" in argv
    args = parser().parse_args([a for a in argv if a != "--debug"])
    args.debug = debug
    _quiet_libraries()
    if args.command in ("preprocess", "inspect", "show"):
        from storage.arrays import skip_pandas_probe
        skip_pandas_probe()
    try:
        return _run(args)
    finally:
        _stopped()
        _flush_prefect_logs()


def _storage_errors() -> tuple[type, ...]:
    # Evaluated when an exception is caught: storage is imported only by commands that use it
    # (a spec check must not pay ~1 s for pyarrow.dataset), and only they can raise its errors:
    # a dataset locked by another writer, an output folder gdl does not own, a corrupt manifest.
    if "storage" not in sys.modules:
        return (_NeverRaised,)
    from storage import DatasetLocked
    from storage.manifest import CorruptManifest
    from storage.ownership import OwnershipError
    return DatasetLocked, OwnershipError, CorruptManifest


class _NeverRaised(Exception):
    """Never raised: stands in for storage.DatasetLocked while storage is not imported."""


def _run(args) -> int:
    from gdl_data.errors import GdlError, problems_of
    try:
        return args.func(args)
    except (GdlError, FileNotFoundError, *_storage_errors()) as exc:
        if args.debug:
            import traceback
            traceback.print_exc()
        return _report(args.command, problems_of(exc) if isinstance(exc, GdlError) else [str(exc)])
    except KeyboardInterrupt as exc:
        _stopped()
        print(f"gdl {args.command}: stopped by {exc or 'SIGINT'}; the last version is intact, and "
              f"finished shards are kept for the next run to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # the run itself failed: one line, traceback on request
        if args.debug:
            import traceback
            traceback.print_exc()
        print(f"gdl {args.command}: the run failed: {type(exc).__name__}: {exc}"
              + ("" if args.debug else "  (rerun with --debug for the traceback)"), file=sys.stderr)
        return EXIT_FAILED


def entry() -> None:
    """The `gdl` program: handed to this code's warm server when one runs (`gdl warm start`,
    flows/warm.py), else `main`, then what a normal exit runs (atexit handlers: logging's flush,
    multiprocessing's joins, Prefect's server shutdown), then leave without tearing down the
    interpreter's modules one by one, which takes 0.25-0.3 s after a run that loaded Dask,
    pyarrow and RDKit (bench/RESULTS.md, "One SDF of many molecules"). `main` itself returns
    normally, for tests and notebooks that call it."""
    import atexit

    from flows.warm_client import forward
    code = forward(sys.argv[1:])
    if code is None:
        code = main()
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    entry()
