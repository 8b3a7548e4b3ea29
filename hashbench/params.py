"""Declared parameters: what a value may be, written as data and checked in one place.

Every configurable thing — a config section, a method, a dataset, a backbone — declares its
parameters as a table ``{name: [constraint, ...]}`` (a value passes if it meets any one of them,
as in scikit-learn's ``_parameter_constraints``). A constraint is one of:

- a Python type: ``str``, ``dict``, ``list``, ``bool`` (strict: only ``True``/``False``), or ``None``
  for the value ``None``;
- :class:`Interval` — an integer or real number in a range (``bool`` is never a number here);
- :class:`Options` — one of a few values;
- :class:`Flag` — a boolean that also accepts the words true/false, yes/no, on/off, 1/0;
- :class:`ListOf` — a list whose every element meets a constraint.

:func:`check` returns the value (a :class:`Flag` turns ``"no"`` into ``False``) or raises one
:class:`~hashbench.errors.HashbenchError` line: what was wrong, the value received, what is valid.

For classes, :func:`constraints_of` combines the table a class (or any base) declares with the
plain types of the constructor's annotations (``margin: float | None`` admits a number or None),
so a parameter without an entry in the table is still type-checked.
"""
from __future__ import annotations

import inspect
import math
import types
import typing
from dataclasses import dataclass, field
from numbers import Integral, Real
from pathlib import Path
from typing import Any, Iterable

from hashbench.errors import HashbenchError, suggest

_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")


class Constraint:
    """Base of the constraint objects: ``accepts(value) -> (ok, value)`` and ``describe()``."""

    def accepts(self, value: Any) -> tuple[bool, Any]:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError


def _is_number(value: Any, kind: type) -> bool:
    if isinstance(value, bool):
        return False
    if kind is int:
        return isinstance(value, Integral)
    return isinstance(value, Real) and math.isfinite(float(value))


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e16 else f"{x:g}"


@dataclass(frozen=True)
class Interval(Constraint):
    """An ``int`` (``kind=int``) or a finite real number (``kind=float``; ints are accepted as they
    are) between ``low`` and ``high``; ``closed`` says which ends are included."""

    kind: type
    low: float | None = None
    high: float | None = None
    closed: str = "both"  # "both", "left", "right", "neither"

    def accepts(self, value):
        if not _is_number(value, self.kind):
            return False, value
        left = self.closed in ("both", "left")
        right = self.closed in ("both", "right")
        if self.low is not None and (value < self.low or (value == self.low and not left)):
            return False, value
        if self.high is not None and (value > self.high or (value == self.high and not right)):
            return False, value
        return True, value

    def describe(self) -> str:
        what = "an integer" if self.kind is int else "a number"
        left = self.closed in ("both", "left")
        right = self.closed in ("both", "right")
        lo, hi = self.low, self.high
        if lo is None and hi is None:
            return what
        if hi is None:
            return f"{what} {'>=' if left else '>'} {_fmt(lo)}"
        if lo is None:
            return f"{what} {'<=' if right else '<'} {_fmt(hi)}"
        if self.kind is int and left and right:
            return f"{what} in {_fmt(lo)}..{_fmt(hi)}"
        return f"{what} in {'[' if left else '('}{_fmt(lo)}, {_fmt(hi)}{']' if right else ')'}"


@dataclass(frozen=True)
class Options(Constraint):
    """One of ``values`` (compared with ``==``; strings exactly as written)."""

    values: tuple

    def __init__(self, *values):
        object.__setattr__(self, "values", tuple(values))

    def accepts(self, value):
        ok = any(type(value) is type(v) and value == v for v in self.values)
        return ok, value

    def describe(self) -> str:
        return "one of " + ", ".join(str(v) for v in self.values)


@dataclass(frozen=True)
class Flag(Constraint):
    """A boolean: ``True``/``False``, or the words true/false, yes/no, on/off, 1/0 (any case), or
    the integers 1/0 — and nothing else."""

    def accepts(self, value):
        if isinstance(value, bool):
            return True, value
        if isinstance(value, Integral) and value in (0, 1):
            return True, bool(value)
        if isinstance(value, str):
            low = value.strip().lower()
            if low in _TRUE:
                return True, True
            if low in _FALSE:
                return True, False
        return False, value

    def describe(self) -> str:
        return "true or false (also yes/no, on/off, 1/0)"


@dataclass(frozen=True)
class ListOf(Constraint):
    """A list (or tuple) whose every element meets ``item``; at least ``min_len`` elements."""

    item: Any
    min_len: int = 0

    def accepts(self, value):
        if not isinstance(value, (list, tuple)) or len(value) < self.min_len:
            return False, value
        out = []
        for v in value:
            ok, v = _accepts_one(self.item, v)
            if not ok:
                return False, value
            out.append(v)
        return True, out

    def describe(self) -> str:
        return f"a {'non-empty ' if self.min_len else ''}list, each value {_describe_one(self.item)}"


_TYPE_WORDS = {str: "a string", dict: "a dict", list: "a list", bool: "true or false", Path: "a path"}


def _accepts_one(constraint, value) -> tuple[bool, Any]:
    if constraint is None:
        return value is None, value
    if isinstance(constraint, Constraint):
        return constraint.accepts(value)
    if constraint is bool:
        return isinstance(value, bool), value
    if constraint is Path:  # a path is given as a string (or a Path object)
        return isinstance(value, (str, Path)) and str(value) != "", value
    if isinstance(constraint, type):  # str, dict, list, nn.Module...: numbers go through Interval
        return isinstance(value, constraint), value
    raise TypeError(f"not a constraint: {constraint!r}")  # our bug, not the user's


def _describe_one(constraint) -> str:
    if constraint is None:
        return "none"
    if isinstance(constraint, Constraint):
        return constraint.describe()
    return _TYPE_WORDS.get(constraint, f"a {getattr(constraint, '__name__', constraint)}")


def describe(constraints: Iterable) -> str:
    """``"a number > 0 or none"``: the alternatives of a constraint list, in words."""
    return " or ".join(dict.fromkeys(_describe_one(c) for c in constraints))


def check(where: str, value: Any, constraints: Iterable) -> Any:
    """``value`` if it meets one of ``constraints`` (converted, for a :class:`Flag`), else a
    one-line error ``"<where> must be <what>; got <value>"``."""
    constraints = list(constraints)
    for c in constraints:
        ok, converted = _accepts_one(c, value)
        if ok:
            return converted
    lists = [c for c in constraints if isinstance(c, ListOf)]
    if len(constraints) == 1 and lists and isinstance(value, (list, tuple)) and len(value) >= lists[0].min_len:
        bad = next(v for v in value if not _accepts_one(lists[0].item, v)[0])
        value = bad  # name the element at fault, not the whole list
    raise HashbenchError(f"{where} must be {describe(constraints)}; got {value!r}")


# ------------------------------------------------------------------------------ schemas of sections
@dataclass(frozen=True)
class Field:
    """One key of a config section: its constraints, its default and one line of help."""

    constraints: list
    default: Any = None
    help: str = ""


@dataclass
class Schema:
    """The declared keys of one config section (``train``, ``eval``, ...)."""

    name: str
    fields: dict[str, Field] = field(default_factory=dict)

    def check(self, given: dict | None, *, fill: bool = True) -> dict:
        """The section's values checked (unknown keys refused, closest first); with ``fill``, the
        defaults of the keys not given are added."""
        given = {} if given is None else given
        if not isinstance(given, dict):
            raise HashbenchError(f"{self.name} must be a dict of settings; got {given!r}")
        out = {}
        for key, value in given.items():
            if key not in self.fields:
                raise HashbenchError(
                    f"unknown key '{self.name}.{key}'; valid: "
                    f"{', '.join(f'{self.name}.{k}' for k in suggest(str(key), self.fields))}")
            out[key] = check(f"{self.name}.{key}", value, self.fields[key].constraints)
        if fill:
            out.update({k: f.default for k, f in self.fields.items() if k not in out})
        return out


# ------------------------------------------------------------------------------ classes
def _from_annotation(hint) -> list | None:
    """Plain-type constraints for an annotation (``float | None`` -> a number or None), or None
    when the annotation says nothing checkable."""
    simple = {int: Interval(int), float: Interval(float), bool: Flag(), str: str, dict: dict, list: list,
              Path: Path, type(None): None}
    if hint in simple:
        return [simple[hint]]
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        out = []
        for arg in typing.get_args(hint):
            part = _from_annotation(arg)
            if part is None:
                return None
            out += part
        return out
    if origin in (list, tuple):
        return [list, tuple]
    if origin is dict:
        return [dict]
    return None


def constraints_of(cls) -> dict[str, list]:
    """The parameter table of a class (or a registered function building one): the constructor's
    annotated plain types, overridden by ``_parameter_constraints`` of the class and its bases."""
    target = getattr(cls, "__wrapped_class__", cls)
    init = target.__init__ if isinstance(target, type) else target
    try:
        hints = typing.get_type_hints(init)
    except Exception:  # noqa: BLE001 - unresolvable annotations: no type checks from them
        hints = {}
    table = {}
    for name, hint in hints.items():
        if name != "return":
            found = _from_annotation(hint)
            if found is not None:
                table[name] = found
    for klass in reversed(getattr(target, "__mro__", ())):
        table.update(getattr(klass, "__dict__", {}).get("_parameter_constraints", {}))
    return table


def check_params(owner: str, obj, params: dict, *, prefix: str = "") -> dict:
    """``params`` for the constructor of ``obj`` (a class, or a variant with its own signature),
    checked: unknown names refused (closest first), values against :func:`constraints_of`.
    Returns them converted."""
    sig = inspect.signature(obj)
    accepted = {n: p for n, p in sig.parameters.items() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
    takes_any = any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())
    table = constraints_of(obj)
    out = {}
    for key, value in params.items():
        if key not in accepted and not takes_any:
            raise HashbenchError(f"{owner} has no parameter '{prefix}{key}'; valid: "
                                 f"{', '.join(prefix + k for k in suggest(str(key), accepted))}")
        out[key] = check(f"{owner}: {prefix}{key}", value, table[key]) if key in table else value
    return out


def required_params(obj) -> list[str]:
    """Names of the constructor's parameters without a default."""
    return [n for n, p in inspect.signature(obj).parameters.items()
            if p.default is p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
