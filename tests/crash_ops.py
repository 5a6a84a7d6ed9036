"""Ops that misbehave on purpose, for tests of how the pipeline survives them.

Registered when this module is imported. Dask workers import it by themselves: unpickling an
OpStep whose parameters are a `CrashParams` imports this module, which registers the op there.
"""
import os
from dataclasses import dataclass

import numpy as np

from gdl_data.ops.registry import register_op


@dataclass(frozen=True)
class CrashParams:
    """`exit_on_prop`: the process exits (like a native crash or the OOM killer) on a molecule
    whose SDF property `crash` equals this value."""

    exit_on_prop: float = 1.0


CRASH = register_op("test_crash", CrashParams, version="1", outputs=("atom_count",))


@CRASH.implement("molecule")
def _crash(sample, p: CrashParams):
    if float(sample.get("prop_crash", 0.0)) == p.exit_on_prop:
        os._exit(137)       # no Python cleanup, no exception: the worker process is simply gone
    return {"atom_count": np.int64(len(sample["pos"]))}
