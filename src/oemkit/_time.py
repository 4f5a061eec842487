"""UTC timestamps as oemkit writes them (RFC 3339, second precision, ``Z``).

Every time oemkit reads goes through :func:`parse_time` (or, for signed license and CRL
documents, the stricter ``models.license.parse_signed_time``) and every time it writes
through :func:`format_time`; every shift of a time by a duration through :func:`shift`.
Each of them turns a moment outside what Python's ``datetime`` can hold (years
0001..9999 in UTC) into the coded error ``E_TIME``, never an ``OverflowError``: an offset
such as ``9999-12-31T23:59:59-01:00`` names a moment after 9999-12-31T23:59:59Z.
"""

from __future__ import annotations

import datetime as dt
import os

from oemkit.errors import InputError

UTC = dt.timezone.utc
#: The first and last moments oemkit can represent (and so accept): years 0001..9999 UTC.
MIN_TIME = dt.datetime(1, 1, 1, tzinfo=UTC)
MAX_TIME = dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
_HINT = "use ISO 8601, e.g. 2027-06-30 or 2027-06-30T12:00:00Z"
_RANGE_HINT = "use a time between 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z"


def _out_of_range(what: str, text: str) -> InputError:
    return InputError("E_TIME", f"{what} {text} is outside the years 0001..9999 once "
                      "converted to UTC", hint=_RANGE_HINT)


def format_time(moment: dt.datetime) -> str:
    """``YYYY-MM-DDTHH:MM:SSZ`` with a four-digit, zero-padded year (``0999-…``): the
    form :func:`parse_time` and ``parse_signed_time`` read back (strftime's ``%Y`` writes
    ``999`` on glibc)."""
    try:
        utc = moment.astimezone(UTC)
    except (OverflowError, ValueError):
        raise _out_of_range("time", moment.isoformat()) from None
    return (f"{utc.year:04d}-{utc.month:02d}-{utc.day:02d}T"
            f"{utc.hour:02d}:{utc.minute:02d}:{utc.second:02d}Z")


def parse_time(text: object, what: str) -> dt.datetime:
    """Parse an ISO 8601 date or timestamp; naive values are UTC.

    ``E_TIME`` (an :class:`InputError`) for anything that is not a string, not ISO 8601,
    or whose UTC moment falls outside 0001-01-01T00:00:00Z..9999-12-31T23:59:59Z.
    """
    if not isinstance(text, str):
        raise InputError("E_TIME", f"{what} is not a date string: {text!r}", hint=_HINT)
    try:
        value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InputError("E_TIME", f"{what} is not an ISO 8601 date: {text!r}",
                         hint=_HINT) from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except (OverflowError, ValueError):
        raise _out_of_range(what, repr(text)) from None


def shift(moment: dt.datetime, delta: dt.timedelta, what: str) -> dt.datetime:
    """``moment + delta``, or ``E_TIME`` when the result leaves years 0001..9999."""
    try:
        return moment + delta
    except OverflowError:
        raise InputError("E_TIME", f"{what}: {format_time(moment)} shifted by {delta} is "
                         "outside the years 0001..9999", hint=_RANGE_HINT) from None


MAX_EPOCH = 253402300799  # 9999-12-31T23:59:59Z


def from_epoch(seconds: int) -> dt.datetime:
    if not 0 <= seconds <= MAX_EPOCH:
        raise InputError("E_SOURCE_DATE_EPOCH", f"build time {seconds} is outside "
                         "1970-01-01..9999-12-31", hint="use seconds since 1970-01-01 UTC")
    return dt.datetime.fromtimestamp(seconds, UTC)


def source_date_epoch(explicit: int | None = None) -> int | None:
    """The reproducible-builds clock: an explicit value, else ``SOURCE_DATE_EPOCH``."""
    if explicit is not None:
        if explicit < 0:
            raise InputError("E_SOURCE_DATE_EPOCH", f"--source-date-epoch {explicit} is negative",
                             hint="use seconds since 1970-01-01 UTC")
        return explicit
    raw = os.environ.get("SOURCE_DATE_EPOCH")
    if raw is None or raw == "":
        return None
    if not raw.isdigit():
        raise InputError("E_SOURCE_DATE_EPOCH", f"SOURCE_DATE_EPOCH={raw!r} is not an integer",
                         hint="set it to seconds since 1970-01-01 UTC, or unset it")
    return int(raw)


def now() -> dt.datetime:
    return dt.datetime.now(UTC).replace(microsecond=0)
