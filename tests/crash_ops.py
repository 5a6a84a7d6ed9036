"""Ops that misbehave on purpose, for tests of how the pipeline survives them.

Registered when this module is imported. Dask workers import it by themselves: unpickling an
OpStep whose parameters are a `CrashParams` imports this module, which registers the op there.
"""
import os
import time
from dataclasses import dataclass

import numpy as np

from gdl_data.ops.registry import register_op


@dataclass(frozen=True)
class CrashParams:
    """`exit_on_prop`: the process exits (like a native crash or the OOM killer) on a molecule
    whose SDF property `crash` equals this value, `exit_after` seconds after it started on it."""

    exit_on_prop: float = 1.0
    exit_after: float = 0.0


CRASH = register_op("test_crash", CrashParams, version="1", outputs=("atom_count",))


@CRASH.implement("molecule")
def _crash(sample, p: CrashParams):
    if float(sample.get("prop_crash", 0.0)) == p.exit_on_prop:
        time.sleep(p.exit_after)
        os._exit(137)       # no Python cleanup, no exception: the worker process is simply gone
    return {"atom_count": np.int64(len(sample["pos"]))}


@dataclass(frozen=True)
class NanParams:
    """`nan_at`: the atom count whose molecules get a NaN `score` (the others a finite one)."""

    nan_at: int = 5


NAN = register_op("test_nan", NanParams, version="1", outputs=("score", "reach"))


@NAN.implement("molecule")
def _nan(sample, p: NanParams):
    n = len(sample["pos"])
    # reach: +inf is allowed (unreachable, as in geodesics); score: NaN is not
    return {"score": np.array([np.nan if n == p.nan_at else float(n)]), "reach": np.array([np.inf, 1.0])}


@NAN.implement_batch("molecule")
def _nans(samples, p: NanParams):
    return [_nan(sample, p) for sample in samples]


@dataclass(frozen=True)
class WhereParams:
    """`tag`: any number (an op needs a parameter to be told apart; unused)."""

    tag: float = 0.0


WHERE = register_op("test_where", WhereParams, version="1", outputs=("pid", "ppid"))


@WHERE.implement("molecule")
def _where(sample, p: WhereParams):
    """The process that computed the sample, and its parent: which process a run computed in."""
    return {"pid": np.int64(os.getpid()), "ppid": np.int64(os.getppid())}
