"""Parameters declared once: type, range or choices, default, meaning and an example.

In the spirit of scikit-learn's parameter validation (its `Interval`, `StrOptions`): a constraint is an object
that tests a value and describes itself, a parameter is valid when it meets one of its
constraints, and the message lists them. Here each parameter is declared in its dataclass::

    @dataclass(frozen=True)
    class GradientsParams:
        knn: int = param(30, Integer(2), doc="neighbours per point on point clouds")

        def __post_init__(self):
            check_params(self)

and the same declaration validates a spec (`problems_in`, every problem at once), checks a
Python call (`check_params`, the first problem as a ValueError), and writes the README tables
(`pipelines/docs.py`). Messages keep one form: `knn must be an integer ≥ 2, got 1; write e.g.
knn: 30`.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any, Iterable, Mapping

REQUIRED = object()   # default of a key that has none: the spec must give it


class Constraint:
    """A test on one value and the words that describe it ("an integer ≥ 1")."""

    def ok(self, value: Any) -> bool:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError

    def allowed(self) -> str:
        """The short form for tables ("≥ 1", "`area`, `angle`")."""
        return self.describe()


def _is_int(value: Any) -> bool:
    # YAML's yes/no/on/off are booleans, and bool is an int in Python: never accept one as a count.
    return isinstance(value, Integral) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


def _bounds(low, high, low_open: bool, high_open: bool) -> str:
    if high is None:
        return f"{'>' if low_open else '≥'} {low:g}" if low is not None else ""
    if low is None:
        return f"{'<' if high_open else '≤'} {high:g}"
    return f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"


@dataclass(frozen=True)
class Integer(Constraint):
    """An integer ≥ low (and ≤ high when given)."""

    low: int | None = None
    high: int | None = None

    def ok(self, value):
        return _is_int(value) and (self.low is None or value >= self.low) \
            and (self.high is None or value <= self.high)

    def describe(self):
        return f"an integer {_bounds(self.low, self.high, False, False)}".rstrip()

    def allowed(self):
        return f"integer {_bounds(self.low, self.high, False, False)}".rstrip()


@dataclass(frozen=True)
class Number(Constraint):
    """A finite real number between low and high; `open` ends are excluded."""

    low: float | None = None
    high: float | None = None
    low_open: bool = True
    high_open: bool = True

    def ok(self, value):
        if not _is_number(value) or not math.isfinite(value):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)

    def describe(self):
        if self.low == 0 and self.low_open and self.high is None:
            return "a positive number"
        return f"a number {_bounds(self.low, self.high, self.low_open, self.high_open)}".rstrip()

    def allowed(self):
        return f"number {_bounds(self.low, self.high, self.low_open, self.high_open)}".rstrip()


@dataclass(frozen=True)
class Choice(Constraint):
    """One of a few strings."""

    options: tuple[str, ...]

    def ok(self, value):
        return isinstance(value, str) and value in self.options

    def describe(self):
        quoted = [f"'{o}'" for o in self.options]
        return " or ".join(quoted) if len(quoted) <= 2 else f"one of {', '.join(quoted)}"

    def allowed(self):
        return ", ".join(f"`{o}`" for o in self.options)


@dataclass(frozen=True)
class Boolean(Constraint):
    """true or false."""

    def ok(self, value):
        return isinstance(value, bool)

    def describe(self):
        return "true or false"


@dataclass(frozen=True)
class Flag(Constraint):
    """Only `true`: a switch that is either given as true or left out."""

    def ok(self, value):
        return value is True

    def describe(self):
        return "true"


@dataclass(frozen=True)
class IntList(Constraint):
    """A non-empty list of integers ≥ low."""

    low: int = 0
    example: tuple = ()

    def ok(self, value):
        return isinstance(value, (list, tuple)) and bool(value) and \
            all(_is_int(v) and v >= self.low for v in value)

    def describe(self):
        return f"a list of integers ≥ {self.low}"

    def allowed(self):
        return f"list of integers ≥ {self.low}"


@dataclass(frozen=True)
class NumberList(Constraint):
    """A non-empty list of finite numbers > 0 (times, radii)."""

    example: tuple = ()

    def ok(self, value):
        return isinstance(value, (list, tuple)) and bool(value) and \
            all(_is_number(v) and math.isfinite(v) and v > 0 for v in value)

    def describe(self):
        return "a list of positive numbers"

    def allowed(self):
        return "list of numbers > 0"


@dataclass(frozen=True)
class Text(Constraint):
    """A non-empty string."""

    def ok(self, value):
        return isinstance(value, str) and bool(value)

    def describe(self):
        return "a string"

    def allowed(self):
        return "string"


@dataclass(frozen=True)
class Nested(Constraint):
    """A mapping (checked further by its own parser)."""

    what: str = "a mapping"

    def ok(self, value):
        return isinstance(value, Mapping)

    def describe(self):
        return self.what


@dataclass(frozen=True)
class Fixed(Constraint):
    """A recorded convention: only the default is accepted (it is written to the manifest)."""

    value: Any

    def ok(self, value):
        return value == self.value

    def describe(self):
        return "fixed"


@dataclass(frozen=True)
class Param:
    """One declared parameter: its default, constraints (any one suffices), meaning, example."""

    default: Any
    constraints: tuple[Constraint, ...]
    doc: str = ""
    example: Any = None

    def problem(self, name: str, value: Any) -> str | None:
        """None when `value` is valid, else one line saying what to write instead."""
        if value is None and self.default is None:
            return None                                  # "not given" where None means that
        if any(c.ok(value) for c in self.constraints):
            return None
        if any(isinstance(c, Fixed) for c in self.constraints):
            return f"{name} is fixed (it is recorded so the manifest documents it); remove it from the spec"
        words = " or ".join(c.describe() for c in self.constraints)
        line = f"{name} must be {words}, got {value!r}"
        example = self.example_value(value)
        if example is not None:
            line += f"; write e.g. {name}: {yaml_text(example)}"
        if isinstance(value, bool) and not any(isinstance(c, Flag) for c in self.constraints):
            line += (" (YAML reads yes/no/on/off/true/false as booleans: put the word in quotes, "
                     "e.g. \"off\")")
        return line

    def example_value(self, value: Any = None) -> Any:
        for c in self.constraints:     # a wrong list is answered with a list
            if isinstance(c, IntList) and c.example and isinstance(value, (list, tuple)):
                return list(c.example)
        return self.default if self.example is None and self.default not in (None, REQUIRED) \
            else self.example

    def allowed(self) -> str:
        return " or ".join(c.allowed() for c in self.constraints)


def yaml_text(value: Any) -> str:
    """A value as it is written in a spec: true, [0, 10, 42], 1.0e-06.

    Exponents get a mantissa with a dot: YAML 1.1 (PyYAML) reads `1e-06` as the string "1e-06".
    """
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(yaml_text(v) for v in value) + "]"
    if isinstance(value, float):
        text = repr(value)
        mantissa, _, exponent = text.partition("e")
        return f"{mantissa if '.' in mantissa else mantissa + '.0'}e{exponent}" if exponent else text
    return str(value)


def param(default: Any, *constraints: Constraint, doc: str = "", example: Any = None) -> Any:
    """A dataclass field declared with its constraints (see the module docstring)."""
    return dataclasses.field(default=default,
                             metadata={"gdl": Param(default, tuple(constraints), doc, example)})


def declared(params_type: type) -> dict[str, Param]:
    """name -> Param for every declared field of a parameter dataclass."""
    return {f.name: f.metadata["gdl"] for f in dataclasses.fields(params_type) if "gdl" in f.metadata}


def problems_in(declarations: Mapping[str, Param], values: Mapping[str, Any]) -> list[str]:
    """One line per invalid value in `values` (keys without a declaration are not judged here)."""
    found = []
    for name, value in values.items():
        if name in declarations:
            problem = declarations[name].problem(name, value)
            if problem:
                found.append(problem)
    return found


def check_params(obj: Any) -> None:
    """Validate a parameter dataclass instance; the first problem as a ValueError."""
    values = {name: getattr(obj, name) for name in declared(type(obj))}
    found = problems_in(declared(type(obj)), values)
    if found:
        raise ValueError(found[0])


def value_problem(name: str, value: Any, *constraints: Constraint, example: Any = None) -> str | None:
    """One value against constraints: None when valid, else the one-line message."""
    return Param(REQUIRED, tuple(constraints), example=example).problem(name, value)


def check_value(name: str, value: Any, *constraints: Constraint, example: Any = None,
                error: type[Exception] = ValueError) -> Any:
    """Validate one argument of a call: returns it, or raises `error` (ValueError by default)."""
    problem = value_problem(name, value, *constraints, example=example)
    if problem:
        raise error(problem)
    return value


def one_line_each(lines: Iterable[str]) -> list[str]:
    """Problems as single lines (a message with a newline would read as two problems)."""
    return [" ".join(str(line).split()) for line in lines]
