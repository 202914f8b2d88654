"""The rules of single settings: each :class:`Check` turns a YAML value into ``(value, None)``
or ``(None, problem)`` and carries the same rule as JSON Schema (``schema.py``), so the loader
and the schema editors use cannot drift apart."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

from ...specs import topic_prefix_problem

Conv = Callable[[Any], tuple[Any, str | None]]


class Check:
    """One field's rule: called with the YAML value, it returns ``(value, None)`` or ``(None,
    problem)``; :attr:`schema` is the same rule in JSON Schema, for editors (``docs/
    config.schema.json``). Keeping both in one object is what keeps them from drifting."""

    def __init__(self, fn: Conv, schema: dict[str, Any]):
        self.fn = fn
        self.schema = schema

    def __call__(self, v: Any) -> tuple[Any, str | None]:
        return self.fn(v)


def number(lo: float | None = None, hi: float | None = None, *, integer: bool = False,
         lo_open: bool = False) -> Check:
    def conv(v: Any) -> tuple[Any, str | None]:
        kind = "an integer" if integer else "a number"
        if isinstance(v, bool) or not isinstance(v, (int, float)) or (integer and not isinstance(v, int)):
            return None, f"must be {kind}"
        if not math.isfinite(v):  # .nan passes every comparison below; .inf is no setting either
            return None, "must be a finite number"
        if lo is not None and (v <= lo if lo_open else v < lo):
            return None, f"must be {'>' if lo_open else '>='} {lo:g}"
        if hi is not None and v > hi:
            return None, f"must be <= {hi:g}"
        return (int(v) if integer else float(v)), None
    schema: dict[str, Any] = {"type": "integer" if integer else "number"}
    if lo is not None:
        schema["exclusiveMinimum" if lo_open else "minimum"] = lo
    if hi is not None:
        schema["maximum"] = hi
    return Check(conv, schema)


def string(*, allow_empty: bool = False, pattern: re.Pattern[str] | None = None, hint: str = "",
         no_space: bool = False) -> Check:
    def conv(v: Any) -> tuple[Any, str | None]:
        if not isinstance(v, str):
            return None, "must be a string" + (f" ({hint})" if hint else "")
        if no_space and v.strip() and any(c.isspace() for c in v):
            return None, "must not contain spaces" + (f" ({hint})" if hint else "")
        if not allow_empty and not v.strip():
            return None, "must not be empty or only spaces"
        if pattern is not None and not pattern.match(v):
            return None, f"must match {pattern.pattern}" + (f" ({hint})" if hint else "")
        return v, None
    schema: dict[str, Any] = {"type": "string"}
    if pattern is not None:
        schema["pattern"] = pattern.pattern
    elif no_space:
        schema["pattern"] = r"^\S+$"
    elif not allow_empty:
        schema["pattern"] = r"\S"  # not empty, not only spaces
    return Check(conv, schema)


def _boolean_conv(v: Any) -> tuple[Any, str | None]:
    if not isinstance(v, bool):
        return None, "must be true or false"
    return v, None


boolean = Check(_boolean_conv, {"type": "boolean"})


def choice(*options: str) -> Check:
    def conv(v: Any) -> tuple[Any, str | None]:
        if v not in options:
            return None, "must be one of " + ", ".join(options)
        return v, None
    return Check(conv, {"enum": list(options)})


def _thresholds_conv(v: Any) -> tuple[Any, str | None]:
    if (not isinstance(v, list) or len(v) != 3
            or not all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
                       and 0 < x < 1 for x in v)):
        return None, "must be a list of 3 numbers between 0 and 1 (P-Net, R-Net, O-Net)"
    return tuple(float(x) for x in v), None


thresholds = Check(_thresholds_conv, {
    "type": "array", "minItems": 3, "maxItems": 3,
    "items": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1}})

#: ``auto``, ``cpu``, ``cuda`` or ``cuda:N`` (:data:`livefaces.detect.options.DEVICES`)
DEVICE_RE = re.compile(r"^(auto|cpu|cuda(:[0-9]+)?)$")


#: a host name or address as a ``Host:`` header carries it (no port, no brackets)
HOSTNAME_RE = re.compile(r"^[A-Za-z0-9._:-]{1,253}$")


def _hosts_conv(v: Any) -> tuple[Any, str | None]:
    if not isinstance(v, list) or not all(isinstance(x, str) and HOSTNAME_RE.match(x.strip("[]"))
                                          for x in v):
        return None, ("must be a list of host names or addresses (letters, digits, '.', '-', "
                      "':'; no port), e.g. [cameras.home, 192.168.1.5]")
    return tuple(x.strip("[]").lower().rstrip(".") for x in v), None


host_list = Check(_hosts_conv, {"type": "array", "items": {"type": "string",
                                                          "pattern": HOSTNAME_RE.pattern}})


def optional(conv: Check) -> Check:
    def c(v: Any) -> tuple[Any, str | None]:
        return (None, None) if v is None else conv(v)
    return Check(c, {"anyOf": [conv.schema, {"type": "null"}]})


def _topic_prefix_conv(v: Any) -> tuple[Any, str | None]:
    if not isinstance(v, str):
        return None, "must be a string"
    bad = topic_prefix_problem(v)
    return (None, bad) if bad else (v, None)


topic_prefix = Check(_topic_prefix_conv, {"type": "string", "pattern": r"^(?!\$)[^#+\s\x00]+$"})
