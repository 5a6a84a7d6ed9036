"""Errors a user sees. Each names the sample (file and record) and says what is wrong with it.

The pipeline turns any of these raised for one sample into one row of the dataset's errors
table (`source`, `stage`, `error` = the kind, `message`) and goes on with the other samples.
"""
from __future__ import annotations

import difflib
from typing import Iterable


class GdlError(Exception):
    """Base class: a problem explained in one line, meant for the user, not a traceback."""

    kind = "error"


class SpecError(GdlError):
    """A pipeline or training spec (or an op parameter) is invalid; the message says what to write."""

    kind = "invalid-spec"


class SampleError(GdlError):
    """One sample cannot be read or computed. `source` names the file and, after `#`, the record."""

    kind = "invalid-sample"

    def __init__(self, source: str, message: str, *, kind: str | None = None):
        self.source = str(source)
        self.detail = message
        if kind is not None:
            self.kind = kind
        super().__init__(f"{self.source}: {message}")


class ReadError(SampleError):
    """A raw file (or one record of it) is not a valid sample of its domain."""

    kind = "unreadable"


class OpError(SampleError):
    """A geometric operator cannot give a correct, finite result for this sample."""

    kind = "op-failed"


class OverBudget(OpError):
    """A sample whose estimated memory for an op exceeds the worker's budget (not computed)."""

    kind = "over-budget"


def over_budget(source: str, op: str, estimate: int, budget: int, advice: str = "") -> OverBudget:
    """`x.fits: op 'eigenbasis' needs an estimated 14.2 GB for this sample, over the worker's
    memory budget of 8.0 GB; write basis: spherical_harmonics, or give each worker more memory`.

    advice: what to change in the spec (the op's own words), "" for none.
    """
    change = f"{advice}, or give each worker more memory" if advice else \
        "give each worker more memory"
    return OverBudget(source, f"op '{op}' needs an estimated {format_bytes(estimate)} for this "
                              f"sample, over the worker's memory budget of {format_bytes(budget)}; "
                              f"{change}")


def format_bytes(count: float) -> str:
    """1536 -> '1.5 kB'; decimal units, as free(1) -h and Dask's memory limits print them."""
    for unit in ("B", "kB", "MB", "GB"):
        if abs(count) < 1000:
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000.0
    return f"{count:.1f} TB"


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """"did you mean 'k'? " for the closest known name, or "" when none is close."""
    hint = difflib.get_close_matches(name, list(known), n=1)
    return f"did you mean '{hint[0]}'? " if hint else ""


def unknown_name(what: str, name: str, known: Iterable[str]) -> SpecError:
    """`unknown op 'eigenbasi'; did you mean 'eigenbasis'? known ops: ...` as a SpecError."""
    known = sorted(known)
    return SpecError(f"unknown {what} '{name}'; {did_you_mean(name, known)}known {what}s: {', '.join(known)}")


class SpecProblems(SpecError):
    """Every problem found in one spec, one line each (`gdl validate` prints them all)."""

    def __init__(self, problems: list[str]):
        self.problems = [" ".join(str(p).split()) for p in problems]
        super().__init__("\n".join(self.problems))


def problems_of(exc: SpecError) -> list[str]:
    """The one-line problems a SpecError carries (one, unless it is a SpecProblems)."""
    return list(getattr(exc, "problems", None) or [" ".join(str(exc).split())])
