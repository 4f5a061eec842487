"""Whole and decimal numbers from text (options, option parts, ``--limit NAME=N``), bounded
before they are converted: at most 16 ASCII digits (``str.isdigit`` accepts ``"²"``; 400
digits would be a huge int or ``inf``) and within a range, else ``E_USAGE`` (exit 2).
Shared by the CLI and the library API (``oemkit.license.issue``) so both say the same."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence

from oemkit.errors import UsageError

#: The largest integer canonical JSON (RFC 8785) carries exactly: every count, sequence
#: number and size oemkit signs or stores fits in it.
MAX_SAFE_INTEGER = (1 << 53) - 1
_INT = re.compile(r"[+-]?[0-9]{1,16}")  # ASCII digits only: str.isdigit() accepts "²"
_FLOAT = re.compile(r"[+-]?(?:[0-9]{1,16}(?:\.[0-9]{0,16})?|\.[0-9]{1,16})"
                    r"(?:[eE][+-]?[0-9]{1,3})?")


def _shown(text: str) -> str:
    return repr(text if len(text) <= 40 else text[:40] + "...")


def parse_int(value: object, what: str, *, minimum: int = 0,
              maximum: int = MAX_SAFE_INTEGER) -> int:
    """An integer option or option part (``--seq``, ``seats=50``, a size), with at most 16
    ASCII digits and within ``minimum..maximum``; anything else is ``E_USAGE`` (exit 2)."""
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    else:
        text = str(value).strip()
        if not _INT.fullmatch(text):
            raise UsageError("E_USAGE", f"{what} {_shown(str(value))} is not an integer",
                             hint=f"{what} takes a whole number from {minimum} to {maximum}")
        number = int(text)
    if not minimum <= number <= maximum:
        bound = (f"greater than or equal to {minimum}" if number < minimum
                 else f"less than or equal to {maximum}")
        raise UsageError("E_USAGE", f"{what} {number} is out of range: it must be {bound}",
                         hint=f"{what} takes a whole number from {minimum} to {maximum}")
    return number


def parse_float(value: object, what: str, *, minimum: float,
                maximum: float = float(MAX_SAFE_INTEGER)) -> float:
    """A decimal option (``--headroom 0.3``, ``--target-qps 200``): finite, bounded
    digits, within ``minimum..maximum``; anything else is ``E_USAGE`` (exit 2)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
    else:
        text = str(value).strip()
        if not _FLOAT.fullmatch(text):
            raise UsageError("E_USAGE", f"{what} {_shown(str(value))} is not a number",
                             hint=f"{what} takes a decimal number from {minimum:g} to "
                                  f"{maximum:g}")
        number = float(text)
    if not (math.isfinite(number) and minimum <= number <= maximum):
        raise UsageError("E_USAGE", f"{what} {number:g} is out of range",
                         hint=f"{what} takes a decimal number from {minimum:g} to "
                              f"{maximum:g}")
    return number


def parse_limits(items: Mapping[str, int] | Sequence[str]) -> dict[str, int]:
    """``--limit NAME=INTEGER`` items (or a mapping of them) as whole numbers, each through
    :func:`parse_int`; ``E_USAGE`` for an item that is not ``NAME=INTEGER``."""
    if isinstance(items, Mapping):
        return {name: parse_int(value, f"--limit {name}") for name, value in items.items()}
    out = {}
    for item in items:
        name, _, value = item.partition("=")
        if not name or not value:
            raise UsageError("E_USAGE", f"--limit {item[:40]!r} is not NAME=INTEGER",
                             hint="e.g. --limit seats=50")
        out[name] = parse_int(value, f"--limit {name}")
    return out
