"""One JSON object per line on stderr: what a log shipper or ``jq`` reads without rules.

Each line has ``ts`` (UTC, ISO 8601 with milliseconds), ``level``, ``logger``, ``msg`` and
``pid``, plus the ``fields`` a call passes in ``extra`` (``license_state``, ``url``, ...).
uvicorn's own loggers go through the same handler.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys


class JsonFormatter(logging.Formatter):
    """Format a record as one line of JSON."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one JSON line (its ``fields`` merged in)."""
        moment = dt.datetime.fromtimestamp(record.created, dt.timezone.utc)
        out = {"ts": moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z",
               "level": record.levelname.lower(), "logger": record.name,
               "msg": record.getMessage(), "pid": record.process}
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            out.update(fields)
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, separators=(",", ":"))


def setup_logging(level: int = logging.INFO) -> None:
    """Route oemkit's and uvicorn's loggers to one JSON handler on stderr."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    for name in ("oemkit.serve", "uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level)
        logger.propagate = False
