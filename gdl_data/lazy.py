"""Modules imported on first use.

scipy costs ≈ 0.3 s to import on this machine, as much as computing 1,000 molecules; the ops
that need it (sparse Laplacians, k-d trees, graph searches) import it through `lazy_module`,
so a run that never calls them (small molecules: dense eigensolves, all-pairs radius graphs)
never pays for it, and the op registry (which every spec validation loads) stays light.
"""
from __future__ import annotations

import importlib
from typing import Any


class LazyModule:
    """Stands for module `name` and imports it at the first attribute asked of it; each attribute
    found is then kept on this object, so later uses cost a plain attribute lookup."""

    def __init__(self, name: str):
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        value = getattr(importlib.import_module(self._name), attr)
        setattr(self, attr, value)
        return value

    def __repr__(self) -> str:
        return f"<lazy module {self._name}>"


def lazy_module(name: str) -> LazyModule:
    """`sp = lazy_module("scipy.sparse")` in place of `import scipy.sparse as sp`."""
    return LazyModule(name)
