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

Each op also says, before computing, how much memory a sample will cost it::

    @EIGENBASIS.estimate("mesh", advice="write a smaller k (now {k})")
    def _mesh_bytes(sample, p: EigenbasisParams) -> int: ...

Where one sample is cheap (a molecule of 20 atoms), per-call overhead dominates: an op may
also implement a domain for many samples at once, giving the same bytes as one at a time
(tests/test_batched_ops.py)::

    @EIGENBASIS.implement_batch("molecule")
    def _molecules(samples, p: EigenbasisParams) -> list[dict[str, np.ndarray]]: ...

`Op.run_batch(samples, params)` uses it when there is one and otherwise calls `run` per
sample; either way one sample's failure is that sample's entry, not the batch's.

`Op.estimate_bytes(sample, params)` is that formula (from the sizes of the sample's arrays and
the parameters only: n, faces, edges, k, sources) plus `BASE_BYTES`, or `default_estimate` where
an op has none for the domain; `Op.over_budget(sample, params, budget)` is the error a worker
records when the estimate exceeds its budget. The formulas are calibrated against measured peak
RSS in bench/RESULTS.md ("Memory estimates") and checked in tests/test_op_estimates.py.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from gdl_data.errors import OpError, OverBudget, SpecError, SpecProblems, did_you_mean, over_budget, unknown_name
from gdl_data.params import declared, problems_in

Impl = Callable[[Mapping[str, Any], Any], dict[str, np.ndarray]]
BatchImpl = Callable[[Sequence[Mapping[str, Any]], Any], list[dict[str, np.ndarray]]]
Estimate = Callable[[Mapping[str, Any], Any], float]

# Added to every formula: what a run of an op costs beyond its arrays (allocator arenas,
# library workspaces, the first touch of a thread pool); measured 10–40 MB on small samples.
BASE_BYTES = 64 << 20
# Ops without a formula for a domain: this many times the sample's own array bytes.
DEFAULT_FACTOR = 16


def sample_bytes(sample: Mapping[str, Any]) -> int:
    """Bytes of the numpy arrays in a sample (its columns as read, plus earlier ops' outputs)."""
    return sum(value.nbytes for value in sample.values() if isinstance(value, np.ndarray))


def default_estimate(sample: Mapping[str, Any]) -> int:
    """The estimate of an op with no formula for the sample's domain: DEFAULT_FACTOR × the
    sample's array bytes + BASE_BYTES (a guess, not a bound: temporaries of a few times the
    input and outputs of a few times the input cover the ops in this package)."""
    return DEFAULT_FACTOR * sample_bytes(sample) + BASE_BYTES


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
    batch_impls: dict[str, BatchImpl] = field(default_factory=dict)
    estimates: dict[str, tuple[Estimate, str]] = field(default_factory=dict)

    def implement(self, domain: str) -> Callable[[Impl], Impl]:
        def decorator(fn: Impl) -> Impl:
            self.impls[domain] = fn
            return fn
        return decorator

    def implement_batch(self, domain: str) -> Callable[[BatchImpl], BatchImpl]:
        """Register `fn(samples, params) -> [outputs, ...]` for many samples of `domain` at once;
        it must give what `run` gives one at a time, byte for byte, and may raise (the batch
        is then run one sample at a time, so that the failure is its sample's)."""
        def decorator(fn: BatchImpl) -> BatchImpl:
            self.batch_impls[domain] = fn
            return fn
        return decorator

    def estimate(self, domain: str, advice: str) -> Callable[[Estimate], Estimate]:
        """Register `fn(sample, params) -> bytes`, the peak memory this op adds on a sample of
        `domain` (without BASE_BYTES), and `advice`: what a user can change when it is too
        much, formatted with the parameters (e.g. "write a smaller k (now {k})")."""
        def decorator(fn: Estimate) -> Estimate:
            self.estimates[domain] = (fn, advice)
            return fn
        return decorator

    def estimate_bytes(self, sample: Mapping[str, Any], params: Any) -> int:
        """Upper estimate of the peak memory (bytes) this op adds while computing `sample` (the
        op's input: reader columns plus outputs of the ops it depends on), before computing."""
        entry = self.estimates.get(sample["domain"])
        if entry is None:
            return default_estimate(sample)
        return int(entry[0](sample, params)) + BASE_BYTES

    def over_budget(self, sample: Mapping[str, Any], params: Any, budget: int) -> OverBudget:
        """The error for a sample whose estimate exceeds `budget` bytes: it names the sample,
        this op, the estimate, the budget and what to change."""
        entry = self.estimates.get(sample["domain"])
        advice = entry[1].format(**params_dict(params)) if entry else ""
        return over_budget(sample.get("source", "?"), self.name,
                           self.estimate_bytes(sample, params), budget, advice)

    def parse_params(self, raw: Mapping[str, Any] | None, domain: str) -> Any:
        """Validate a spec's parameter mapping against the declarations (gdl_data/params.py);
        raises SpecError (SpecProblems: every problem, one line each) saying what to write."""
        if domain not in self.impls:
            raise SpecError(f"op '{self.name}' is not defined for domain '{domain}'; "
                            f"it supports: {', '.join(sorted(self.impls))}")
        raw = dict(raw or {})
        names = [f.name for f in dataclasses.fields(self.params_type)]
        problems = [f"op '{self.name}' has no parameter '{key}'; {did_you_mean(key, names)}"
                    f"its parameters are: {', '.join(names) or '(none)'}" for key in raw if key not in names]
        problems += [f"op '{self.name}': {p}" for p in problems_in(declared(self.params_type), raw)]
        if problems:
            raise SpecProblems(problems)
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
        return self._checked(sample, self.impls[sample["domain"]](sample, params))

    def run_batch(self, samples: Sequence[Mapping[str, Any]], params: Any) -> list[dict[str, np.ndarray] | Exception]:
        """`run` on each of `samples` (one domain), each entry its outputs or the exception
        that sample raised. With a batch implementation for the domain, all are computed at once
        first; if that raises, one at a time, so a bad sample fails alone."""
        batch = self.batch_impls.get(samples[0]["domain"]) if len(samples) > 1 else None
        if batch is not None:
            try:
                outs = batch(samples, params)
            except Exception:  # noqa: BLE001 - found again below, and named, one sample at a time
                outs = None
            if outs is not None:
                if self._all_finite(outs):      # one pass over every sample's values
                    return outs
                return [self._checked_or_error(s, out) for s, out in zip(samples, outs)]
        return [self._run_or_error(s, params) for s in samples]

    @staticmethod
    def _all_finite(outs: Sequence[Mapping[str, np.ndarray]]) -> bool:
        """True when every value of every output is finite (_checked would pass each); False
        when one is not, or the outputs differ in keys or dtypes (then each is checked alone)."""
        if not outs or any(out.keys() != outs[0].keys() for out in outs):
            return False
        for key in outs[0]:
            values = [np.asarray(out[key]).ravel() for out in outs]
            if {v.dtype.kind for v in values} - {"i", "u", "b"} and not (
                    all(v.dtype.kind == "f" for v in values) and np.isfinite(np.concatenate(values)).all()):
                return False
        return True

    def _run_or_error(self, sample: Mapping[str, Any], params: Any) -> dict[str, np.ndarray] | Exception:
        try:
            return self.run(sample, params)
        except Exception as exc:  # noqa: BLE001 - the sample's own failure, reported as its error row
            return exc

    def _checked_or_error(self, sample: Mapping[str, Any], out: dict[str, np.ndarray]) -> dict[str, np.ndarray] | Exception:
        try:
            return self._checked(sample, out)
        except OpError as exc:
            return exc

    def _checked(self, sample: Mapping[str, Any], out: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        for key, value in out.items():
            arr = np.asarray(value)
            # isfinite alone first: the common case costs one pass, not three
            if arr.dtype.kind == "f" and not np.isfinite(arr).all() and not np.all(np.isfinite(arr) | np.isposinf(arr)):
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


def list_ops(builtin: bool = False) -> dict[str, Op]:
    """Every registered op; with `builtin`, only the ones gdl_data.ops defines (not those a
    user's or a test's module registered)."""
    _load_builtin_ops()
    return {name: op for name, op in _REGISTRY.items()
            if not builtin or op.params_type.__module__.startswith("gdl_data.ops")}


def params_dict(params: Any) -> dict[str, Any]:
    """The parameters as plain JSON-able values (for the manifest and cache keys)."""
    return dataclasses.asdict(params)


def _load_builtin_ops() -> None:
    # Importing the modules registers the ops; done lazily so the registry module stays import-light.
    import gdl_data.ops  # noqa: F401
