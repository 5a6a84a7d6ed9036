"""The operator registry: spec names -> pure functions, with validated parameters.

An op is declared once with its parameters (a frozen dataclass, validated early with messages
that say what to write instead) and implemented once per domain::

    EIGENBASIS = register_op("eigenbasis", EigenbasisParams, version="1",
                             outputs=("mass", "evals", "evecs"))

    @EIGENBASIS.implement("mesh")
    def _mesh(sample, p: EigenbasisParams) -> dict[str, np.ndarray]:
        return mesh_eigenbasis(sample["pos"], sample["faces"], k=p.k)

`sample` is the reader's record plus the outputs of the ops named in `depends_on` that the spec
runs (e.g. `neighborhoods` depends on `frames` for transport); an op never sees other outputs.
The implementation returns new columns only. `version` is bumped whenever the op's numbers
change, so cached results computed by older code are recomputed (shared/DESIGN.md).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np

from gdl_data.errors import OpError, SpecError, did_you_mean, unknown_name

Impl = Callable[[Mapping[str, Any], Any], dict[str, np.ndarray]]


@dataclass
class Op:
    """One registered operator: its parameter type, code version and per-domain implementations."""

    name: str
    params_type: type
    version: str
    outputs: tuple[str, ...]
    depends_on: tuple[str, ...] = ()
    doc: str = ""
    # Signal columns (beyond the domain's structure, gdl_data/domains.py STRUCTURE) the op reads;
    # a spec running such an op stores its outputs per sample instead of sharing them.
    reads_signals: tuple[str, ...] = ()
    impls: dict[str, Impl] = field(default_factory=dict)

    def implement(self, domain: str) -> Callable[[Impl], Impl]:
        def decorator(fn: Impl) -> Impl:
            self.impls[domain] = fn
            return fn
        return decorator

    def parse_params(self, raw: Mapping[str, Any] | None, domain: str) -> Any:
        """Validate a spec's parameter mapping; raises SpecError saying what to write instead."""
        if domain not in self.impls:
            raise SpecError(f"op '{self.name}' is not defined for domain '{domain}'; "
                            f"it supports: {', '.join(sorted(self.impls))}")
        raw = dict(raw or {})
        names = [f.name for f in dataclasses.fields(self.params_type)]
        for key in raw:
            if key not in names:
                raise SpecError(f"op '{self.name}' has no parameter '{key}'; {did_you_mean(key, names)}"
                                f"its parameters are: {', '.join(names) or '(none)'}")
        try:
            params = self.params_type(**raw)
        except (TypeError, ValueError) as exc:
            raise SpecError(f"op '{self.name}': {exc}") from None
        check = getattr(params, "check_domain", None)
        if check is not None:
            check(domain)
        return params

    def run(self, sample: Mapping[str, Any], params: Any) -> dict[str, np.ndarray]:
        """Apply to one sample; refuses NaN/inf in any output (never stored silently)."""
        out = self.impls[sample["domain"]](sample, params)
        for key, value in out.items():
            arr = np.asarray(value)
            if arr.dtype.kind == "f" and not np.all(np.isfinite(arr) | np.isposinf(arr)):
                raise OpError(sample.get("source", "?"),
                              f"op '{self.name}' produced NaN or -inf in '{key}'", kind="non-finite")
        return out


_REGISTRY: dict[str, Op] = {}


def register_op(name: str, params_type: type, *, version: str, outputs: tuple[str, ...],
                depends_on: tuple[str, ...] = (), doc: str = "", reads_signals: tuple[str, ...] = ()) -> Op:
    """Declare an op. `depends_on` names the ops whose outputs it reads (when they are in the
    spec): it then sees the reader's columns plus those outputs only, and its cache key includes
    theirs, so changing one op recomputes exactly the ops that read it. `reads_signals` names
    the columns other than the domain's structure it reads (none of the built-in ops does)."""
    if name in _REGISTRY:
        raise ValueError(f"op '{name}' registered twice")
    op = Op(name, params_type, version, tuple(outputs), tuple(depends_on), doc, tuple(reads_signals))
    _REGISTRY[name] = op
    return op


def get_op(name: str) -> Op:
    _load_builtin_ops()
    if name not in _REGISTRY:
        raise unknown_name("op", name, _REGISTRY)
    return _REGISTRY[name]


def list_ops() -> dict[str, Op]:
    _load_builtin_ops()
    return dict(_REGISTRY)


def params_dict(params: Any) -> dict[str, Any]:
    """The parameters as plain JSON-able values (for the manifest and cache keys)."""
    return dataclasses.asdict(params)


def _load_builtin_ops() -> None:
    # Importing the modules registers the ops; done lazily so the registry module stays import-light.
    import gdl_data.ops  # noqa: F401
