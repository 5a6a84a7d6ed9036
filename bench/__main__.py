"""`python -m bench`: every benchmark with its default settings, one after another.

Each runs in its own process (as `python -m bench.<name>` would), so one's memory and threads do
not colour the next one's figures. Exit status: non-zero if any of them failed.
"""
import subprocess
import sys

MODULES = [          # add a benchmark module here
    "bench.codec",
    "bench.eigenbasis",
    "bench.loader",
    "bench.reference_models",
    "bench.scale",
    "bench.shared",
]


def main() -> int:
    failed = []
    for name in MODULES:
        print(f"\n===== python -m {name} =====", flush=True)
        if subprocess.run([sys.executable, "-m", name]).returncode != 0:
            failed.append(name)
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
