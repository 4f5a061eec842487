"""UTC timestamps as oemkit writes them (RFC 3339, second precision, ``Z``)."""

from __future__ import annotations

import datetime as dt
import os

from oemkit.errors import InputError

UTC = dt.timezone.utc


def format_time(moment: dt.datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: object, what: str) -> dt.datetime:
    """Parse an ISO 8601 date or timestamp; naive values are UTC."""
    if not isinstance(text, str):
        raise InputError("E_TIME", f"{what} is not a date string: {text!r}",
                         hint="use ISO 8601, e.g. 2027-06-30 or 2027-06-30T12:00:00Z")
    try:
        value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InputError("E_TIME", f"{what} is not an ISO 8601 date: {text!r}",
                         hint="use ISO 8601, e.g. 2027-06-30 or 2027-06-30T12:00:00Z") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


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
