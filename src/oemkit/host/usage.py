"""Usage metering on the host: the counting store beside the license state, the meter a
serving worker counts into, and the signed report made from it (docs/USAGE.md).

Counts live in ``<state>.usage.json`` beside the license state file and are written under
the license state's own lock (``<state>.lock``), atomically, mode 0600. A worker counts in
memory (:meth:`UsageMeter.count`: a dictionary increment, no I/O) and adds what it counted
to the file every flush interval and at SIGTERM (:meth:`UsageMeter.write`: read, add,
write, under the lock), so several worker processes never lose each other's counts and a
``kill -9`` loses at most the last interval.

The clock is protected as the license's is: the file keeps ``last_seen``, the latest
moment any meter or report saw (the license state's ``last_seen`` counts too), and an
inference is counted on the UTC day of ``max(now, what this worker saw, last_seen)``, so a
clock set back never re-opens an earlier day; a day a report has closed (one before the
day the last report ended) is never counted into again, and counts only ever grow until a
report takes them.

Counts a worker cannot write at shutdown (a damaged or locked usage file, a permission
problem) are not dropped: they go to an *unsaved* file beside it,
``<state>.usage.unsaved-<pid>-<ns>.json`` (:func:`save_unsaved`), which the next flush or
report adds under the lock (:func:`_merge_unsaved`). The usage file lists the unsaved
files it has added (``merged``) until they are removed, so a crash between adding one and
removing it never counts it twice.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from oemkit._time import UTC, format_time
from oemkit.errors import EnvironmentProblem, InputError, OemkitError, UsageError

if TYPE_CHECKING:
    from oemkit.crypto.keys import PrivateKeyInfo

log = logging.getLogger("oemkit.serve")

USAGE_STATE_TYPE = "oemkit-usage-state/v1"
USAGE_UNSAVED_TYPE = "oemkit-usage-unsaved/v1"
#: At most this many unsaved files are remembered as added (the rest wait their turn).
MAX_MERGED = 256
#: A usage state larger than this is refused unread.
MAX_USAGE_BYTES = 16 << 20
#: Seconds between a worker's flushes (``$OEMKIT_USAGE_FLUSH_S`` changes it).
FLUSH_INTERVAL_S = 10.0
_DAY_S = 86400
_HINT = ("move it away to count afresh (tell the vendor: report numbers restart at 1), or "
         "restore it from a backup")

#: Pending counts: (license id, epoch day, feature) -> [requests, rows].
Pending = dict[tuple[str, int, str], list[int]]


def usage_path(state_path: Path) -> Path:
    """The usage state beside the license state: ``<state>.usage.json``."""
    return state_path.with_name(state_path.name + ".usage.json")


def flush_interval() -> float:
    """``$OEMKIT_USAGE_FLUSH_S`` (0.01 to 3600 seconds), else :data:`FLUSH_INTERVAL_S`."""
    raw = os.environ.get("OEMKIT_USAGE_FLUSH_S", "")
    try:
        value = float(raw)
    except ValueError:
        return FLUSH_INTERVAL_S
    return value if 0.01 <= value <= 3600 else FLUSH_INTERVAL_S


def _epoch_day(moment: dt.datetime) -> int:
    return int(moment.timestamp() // _DAY_S)


def _day_text(day: int) -> str:
    return (dt.date(1970, 1, 1) + dt.timedelta(days=day)).isoformat()


def _day_number(text: str) -> int:
    return (dt.date.fromisoformat(text) - dt.date(1970, 1, 1)).days


@dataclass
class LicenseUsage:
    """One license's unreported counts and where its reports stand."""

    model_counts: dict[tuple[int, str, str], list[int]] = field(default_factory=dict)
    seq: int = 0
    prev: str | None = None
    reported_until: dt.datetime | None = None
    first: dt.datetime | None = None
    salt: str | None = None

    @property
    def closed_day(self) -> int:
        """Days before this one were closed by a report (nothing is counted into them)."""
        return _epoch_day(self.reported_until) if self.reported_until else 0


@dataclass
class UsageState:
    """The whole usage file: the clock's high-water mark and one entry per license."""

    last_seen: dt.datetime | None = None
    licenses: dict[str, LicenseUsage] = field(default_factory=dict)
    #: Unsaved files already added (names beside the usage file), until they are gone.
    merged: list[str] = field(default_factory=list)

    def to_bytes(self) -> bytes:
        """The file's bytes (pretty JSON, sorted: a person may read it)."""
        doc: dict[str, Any] = {
            "type": USAGE_STATE_TYPE,
            "last_seen": format_time(self.last_seen) if self.last_seen else None,
            "licenses": {}}
        if self.merged:  # written only when there are some: older files stay as they were
            doc["merged"] = sorted(self.merged)
        for lid, u in sorted(self.licenses.items()):
            doc["licenses"][lid] = {
                "seq": u.seq, "prev": u.prev, "salt": u.salt,
                "reported_until": format_time(u.reported_until) if u.reported_until
                else None,
                "first": format_time(u.first) if u.first else None,
                "counts": [{"day": _day_text(d), "model": m, "feature": f,
                            "requests": v[0], "rows": v[1]}
                           for (d, m, f), v in sorted(u.model_counts.items())]}
        return (json.dumps(doc, indent=2) + "\n").encode()


def _corrupt(path: Path, why: str) -> EnvironmentProblem:
    return EnvironmentProblem("E_USAGE_STATE", f"the usage state {path} is not usable: {why}; "
                              "nothing was counted into it or reported from it", hint=_HINT)


def _time_or_none(value: Any, where: str, path: Path) -> dt.datetime | None:
    from oemkit.models.license import parse_signed_time

    if value is None:
        return None
    try:
        return parse_signed_time(value)
    except ValueError:
        raise _corrupt(path, f"{where} is not a time") from None


def _nat(value: Any, where: str, path: Path) -> int:
    if type(value) is not int or value < 0:
        raise _corrupt(path, f"{where} must be a non-negative integer")
    return value


def parse_usage(data: bytes, path: Path) -> UsageState:
    """Parse the usage file strictly (what :meth:`UsageState.to_bytes` writes).

    Raises:
        EnvironmentProblem: E_USAGE_STATE naming what is wrong.
    """
    from oemkit._canonical import parse_json
    from oemkit.models.license import is_license_id
    from oemkit.models.usage import is_day, is_name

    if len(data) > MAX_USAGE_BYTES:
        raise _corrupt(path, f"larger than {MAX_USAGE_BYTES} bytes")
    try:
        obj = parse_json(data, what=str(path))
    except InputError as exc:
        raise _corrupt(path, exc.message) from None
    if not isinstance(obj, dict) or obj.get("type") != USAGE_STATE_TYPE or not {
            "type", "last_seen", "licenses"} <= set(obj) <= {
            "type", "last_seen", "licenses", "merged"} or not isinstance(obj["licenses"], dict):
        raise _corrupt(path, f"not an {USAGE_STATE_TYPE} document")
    state = UsageState(_time_or_none(obj["last_seen"], "last_seen", path))
    merged = obj.get("merged", [])
    if not isinstance(merged, list) or len(merged) > MAX_MERGED or not all(
            isinstance(n, str) and is_unsaved_name(path, n) for n in merged):
        raise _corrupt(path, "merged must list unsaved usage files beside it")
    state.merged = list(merged)
    keys = {"seq", "prev", "salt", "reported_until", "first", "counts"}
    for lid, raw in obj["licenses"].items():
        if not is_license_id(lid) or not isinstance(raw, dict) or set(raw) != keys:
            raise _corrupt(path, f"the entry {lid!r:.60} is malformed")
        u = LicenseUsage(seq=_nat(raw["seq"], f"{lid}.seq", path),
                         reported_until=_time_or_none(raw["reported_until"],
                                                      f"{lid}.reported_until", path),
                         first=_time_or_none(raw["first"], f"{lid}.first", path))
        for name in ("prev", "salt"):
            if raw[name] is not None and not isinstance(raw[name], str):
                raise _corrupt(path, f"{lid}.{name} must be a string or null")
        u.prev, u.salt = raw["prev"], raw["salt"]
        if not isinstance(raw["counts"], list):
            raise _corrupt(path, f"{lid}.counts must be a list")
        for c in raw["counts"]:
            if not isinstance(c, dict) or set(c) != {"day", "model", "feature", "requests",
                                                     "rows"} or not is_day(c["day"]) or \
                    not is_name(c["model"]) or not is_name(c["feature"]):
                raise _corrupt(path, f"a count of {lid} is malformed")
            u.model_counts[(_day_number(c["day"]), c["model"], c["feature"])] = [
                _nat(c["requests"], "requests", path), _nat(c["rows"], "rows", path)]
        state.licenses[lid] = u
    return state


def _read(path: Path) -> UsageState:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return UsageState()
    except IsADirectoryError:
        raise _corrupt(path, "it is a directory") from None
    except PermissionError as exc:
        raise EnvironmentProblem("E_PERMISSION", f"cannot read the usage state {path}: "
                                 f"{exc.strerror}", hint="run as the user that owns it "
                                 "(oemkit writes it 0600)") from None
    return parse_usage(data, path)


def _write(path: Path, state: UsageState) -> None:
    from oemkit._fs import atomic_write_bytes

    try:
        atomic_write_bytes(path, state.to_bytes(), mode=0o600)
    except OSError as exc:
        raise EnvironmentProblem("E_WRITE", f"cannot write the usage state {path}: "
                                 f"{exc.strerror or exc}; it is unchanged",
                                 hint="free space or fix the permissions there") from None


def _license_seen(state_path: Path) -> dt.datetime | None:
    """The license state's ``last_seen`` (the host clock's high-water mark), if readable."""
    from oemkit.host.license_state import load_state

    try:
        return load_state(state_path)[0].last_seen
    except OemkitError:
        return None


def read_usage(state_path: Path) -> UsageState:
    """The usage state beside ``state_path`` (empty when there is none), under the lock.

    Raises:
        EnvironmentProblem: E_USAGE_STATE, E_PERMISSION, E_LOCKED, E_WRITE (no folder).
        InputError: E_LOCK_UNSAFE.
    """
    from oemkit.host.license_state import state_lock

    with state_lock(state_path):
        return _read(usage_path(state_path))


def _add(state: UsageState, model: str, pending: Pending,
         salts: Mapping[str, str | None], high: dt.datetime) -> dt.datetime:
    """Add ``pending`` (counted serving ``model``) and ``salts`` to ``state``; the new
    high-water mark (``high`` or the latest day counted)."""
    for (lid, day, feature), (requests, rows) in pending.items():
        u = state.licenses.setdefault(lid, LicenseUsage())
        day = max(day, u.closed_day)
        entry = u.model_counts.setdefault((day, model, feature), [0, 0])
        entry[0] += requests
        entry[1] += rows
        begins = dt.datetime.fromtimestamp(day * _DAY_S, UTC)
        if u.reported_until is not None:
            begins = max(begins, u.reported_until)
        u.first = begins if u.first is None else min(u.first, begins)
        high = max(high, dt.datetime.fromtimestamp(day * _DAY_S, UTC))
    for lid, salt in salts.items():
        u = state.licenses.setdefault(lid, LicenseUsage())
        if salt is not None:
            u.salt = salt
    return high


def add_counts(state_path: Path, model: str, pending: Pending,
               salts: Mapping[str, str | None], now: dt.datetime) -> int:
    """Add ``pending`` (counted by a worker serving ``model``) to the usage state under
    the lock, with any unsaved files waiting beside it; the epoch day counts go to from
    now on (the clock's high-water mark).

    A count for a day a report has closed goes to the first open day instead.

    Raises:
        EnvironmentProblem: E_USAGE_STATE, E_PERMISSION, E_LOCKED, E_WRITE.
        InputError: E_LOCK_UNSAFE.
    """
    from oemkit.host.license_state import state_lock

    path = usage_path(state_path)
    with state_lock(state_path):
        state = _read(path)
        seen = [now, *(t for t in (state.last_seen, _license_seen(state_path)) if t)]
        high = _add(state, model, pending, salts, max(seen))
        added, high = _merge_unsaved(state_path, state, high)
        state.last_seen = high.replace(microsecond=0)
        _write(path, state)
        _remove_merged(added)
    return _epoch_day(high)


# --------------------------------------------------------------------------- unsaved counts


def _unsaved_prefix(state_path: Path) -> str:
    return usage_path(state_path).name + ".unsaved-"


def is_unsaved_name(usage_file: Path, name: str) -> bool:
    """Whether ``name`` is an unsaved file of the usage file ``usage_file``."""
    prefix = usage_file.name + ".unsaved-"
    middle = name[len(prefix):-len(".json")]
    return (name.startswith(prefix) and name.endswith(".json") and 0 < len(middle) <= 64
            and all(c.isalnum() or c == "-" for c in middle))


def unsaved_files(state_path: Path) -> list[Path]:
    """The unsaved usage files beside the usage state, oldest name first."""
    folder, prefix = state_path.parent, _unsaved_prefix(state_path)
    usage = usage_path(state_path)
    try:
        names = [n for n in os.listdir(folder) if n.startswith(prefix)]
    except OSError:
        return []
    return [folder / n for n in sorted(names) if is_unsaved_name(usage, n)]


def save_unsaved(state_path: Path, model: str, pending: Pending,
                 salts: Mapping[str, str | None]) -> Path:
    """Write counts that could not be added to the usage state into a new unsaved file
    beside it (atomically, 0600), for the next flush or report to add.

    Raises:
        EnvironmentProblem: E_WRITE (nothing was written).
    """
    from oemkit._fs import atomic_write_bytes

    path = state_path.with_name(f"{_unsaved_prefix(state_path)}{os.getpid()}-"
                                f"{time.time_ns()}.json")
    doc = {"type": USAGE_UNSAVED_TYPE, "model": model,
           "counts": [{"license_id": lid, "day": _day_text(day), "feature": feature,
                       "requests": v[0], "rows": v[1]}
                      for (lid, day, feature), v in sorted(pending.items())],
           "salts": dict(sorted(salts.items()))}
    try:
        atomic_write_bytes(path, (json.dumps(doc, indent=2) + "\n").encode(), mode=0o600)
    except OSError as exc:
        raise EnvironmentProblem("E_WRITE", f"cannot write the unsaved usage counts {path}: "
                                 f"{exc.strerror or exc}", hint="free space or fix the "
                                 "permissions there") from None
    return path


def parse_unsaved(data: bytes, path: Path) -> tuple[str, Pending, dict[str, str | None]]:
    """An unsaved file's model, counts and salts (what :func:`save_unsaved` writes).

    Raises:
        EnvironmentProblem: E_USAGE_STATE naming the file.
    """
    from oemkit._canonical import parse_json
    from oemkit.models.license import is_license_id
    from oemkit.models.usage import is_day, is_name

    def bad(why: str) -> EnvironmentProblem:
        return EnvironmentProblem(
            "E_USAGE_STATE", f"the unsaved usage counts {path} are not usable: {why}; "
            "nothing was counted from them", hint="move the file away (its counts are "
            "then lost) or restore it as oemkit wrote it")

    if len(data) > MAX_USAGE_BYTES:
        raise bad(f"larger than {MAX_USAGE_BYTES} bytes")
    try:
        obj = parse_json(data, what=str(path))
    except InputError as exc:
        raise bad(exc.message) from None
    if not isinstance(obj, dict) or obj.get("type") != USAGE_UNSAVED_TYPE or set(obj) != {
            "type", "model", "counts", "salts"} or not is_name(obj["model"]) or \
            not isinstance(obj["counts"], list) or not isinstance(obj["salts"], dict):
        raise bad(f"not an {USAGE_UNSAVED_TYPE} document")
    pending: Pending = {}
    for c in obj["counts"]:
        if not isinstance(c, dict) or set(c) != {"license_id", "day", "feature", "requests",
                                                 "rows"} or not is_license_id(
                c["license_id"]) or not is_day(c["day"]) or not is_name(c["feature"]) or \
                any(type(c[k]) is not int or c[k] < 0 for k in ("requests", "rows")):
            raise bad("a count is malformed")
        entry = pending.setdefault((c["license_id"], _day_number(c["day"]), c["feature"]),
                                   [0, 0])
        entry[0] += c["requests"]
        entry[1] += c["rows"]
    salts: dict[str, str | None] = {}
    for lid, salt in obj["salts"].items():
        if not is_license_id(lid) or not (salt is None or isinstance(salt, str)):
            raise bad("a salt is malformed")
        salts[lid] = salt
    return obj["model"], pending, salts


def _load_unsaved(path: Path) -> tuple[str, Pending, dict[str, str | None]] | None:
    """:func:`parse_unsaved` of the file at ``path`` (read at most one byte past the bound),
    or None when it is gone (another process added and removed it meanwhile).

    Raises:
        EnvironmentProblem: E_USAGE_STATE (damaged), E_PERMISSION (unreadable).
    """
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_USAGE_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise EnvironmentProblem("E_PERMISSION", f"cannot read the unsaved usage counts "
                                 f"{path}: {exc.strerror}", hint="run as the user that "
                                 "owns it (oemkit writes it 0600)") from None
    return parse_unsaved(data, path)


def _merge_unsaved(state_path: Path, state: UsageState,
                   high: dt.datetime) -> tuple[list[Path], dt.datetime]:
    """Add the unsaved files not yet added to ``state`` (under the lock) and list them in
    ``state.merged``: the files to remove once ``state`` is written, and the high-water
    mark ``high`` raised to the days they count. Files it lists that are still there were
    added before a crash: they are removed, not added again.

    Raises:
        EnvironmentProblem: E_USAGE_STATE (a damaged unsaved file), E_PERMISSION.
    """
    folder = state_path.parent
    still = [n for n in state.merged if (folder / n).exists()]
    _remove_merged([folder / n for n in still])
    state.merged = [n for n in still if (folder / n).exists()]
    added: list[Path] = []
    for path in unsaved_files(state_path):
        if path.name in state.merged:
            continue
        if len(state.merged) >= MAX_MERGED:
            break
        loaded = _load_unsaved(path)
        if loaded is None:
            continue
        model, pending, salts = loaded
        high = _add(state, model, pending, salts, high)
        state.merged.append(path.name)
        added.append(path)
    return added, high


def _remove_merged(paths: Sequence[Path]) -> None:
    for path in paths:
        with contextlib.suppress(OSError):
            path.unlink()


class UsageMeter:
    """One worker's counter: :meth:`count` on the request path (memory only), the flush
    off it. ``clock`` (seconds since the epoch, ``time.time`` by default) is injectable."""

    def __init__(self, state_path: Path, model: str,
                 clock: Callable[[], float] = time.time) -> None:
        self.state_path = state_path
        self.model = model
        self.clock = clock
        self.license_id: str | None = None
        self.pending: Pending = {}
        self.salts: dict[str, str | None] = {}
        #: The latest epoch day this worker counted on or read from the file.
        self.floor = 0

    def activate(self, license_id: str, salt: str | None) -> None:
        """Count from now on for ``license_id`` (``salt``: its hardware binding's)."""
        self.license_id = license_id
        self.salts[license_id] = salt

    def count(self, rows: int, features: Sequence[str] = ()) -> None:
        """One answered inference of ``rows`` rows: ``infer`` and each of ``features``."""
        lid = self.license_id
        if lid is None:
            return
        day = int(self.clock() // _DAY_S)
        if day < self.floor:
            day = self.floor
        else:
            self.floor = day
        pending = self.pending
        for feature in ("infer", *features):
            entry = pending.get((lid, day, feature))
            if entry is None:
                pending[(lid, day, feature)] = [1, rows]
            else:
                entry[0] += 1
                entry[1] += rows

    def take(self) -> tuple[Pending, dict[str, str | None]]:
        """What was counted since the last flush (and the salts), handed over once."""
        pending, self.pending = self.pending, {}
        salts, self.salts = self.salts, {}
        return pending, salts

    def put_back(self, pending: Pending, salts: Mapping[str, str | None]) -> None:
        """Return counts a flush could not write (they go with the next one)."""
        for key, (requests, rows) in pending.items():
            entry = self.pending.setdefault(key, [0, 0])
            entry[0] += requests
            entry[1] += rows
        for lid, salt in salts.items():
            self.salts.setdefault(lid, salt)

    def write(self, pending: Pending, salts: Mapping[str, str | None]) -> None:
        """Add ``pending`` to the file (a worker thread may call it; no shared state but
        ``floor``, which only grows).

        Raises:
            EnvironmentProblem: E_USAGE_STATE, E_PERMISSION, E_LOCKED, E_WRITE.
            InputError: E_LOCK_UNSAFE.
        """
        now = dt.datetime.fromtimestamp(self.clock(), UTC)
        self.floor = max(self.floor, add_counts(self.state_path, self.model, pending,
                                                salts, now))

    def flush(self) -> None:
        """Take, write, and put back what could not be written (then raise).

        Raises:
            EnvironmentProblem: E_USAGE_STATE, E_PERMISSION, E_LOCKED, E_WRITE.
            InputError: E_LOCK_UNSAFE.
        """
        pending, salts = self.take()
        if not pending and not salts:
            return
        try:
            self.write(pending, salts)
        except OemkitError:
            self.put_back(pending, salts)
            raise


def usage_summary(state_path: Path) -> dict[str, Any]:
    """What the usage state beside ``state_path`` holds, read without the lock (its files
    are replaced atomically) and never raising: per license the report sequence, period
    and unreported totals (no salt, no per-day rows), whether the state is usable (else
    ``error``: code, message, hint), and the unsaved files waiting beside it. ``present``
    is False when this host meters nothing. ``oemkit usage status`` and ``support
    collect`` show it."""
    path = usage_path(state_path)
    doc: dict[str, Any] = {"path": str(path), "present": False, "licenses": {}}
    try:
        state = _read(path)
        doc["present"] = path.exists()
        for lid, u in sorted(state.licenses.items()):
            infer = [(d, v) for (d, _, f), v in u.model_counts.items() if f == "infer"]
            days = sorted({d for d, _ in infer})
            doc["licenses"][lid] = {
                "seq": u.seq, "reported_until": format_time(u.reported_until)
                if u.reported_until else None,
                "first": format_time(u.first) if u.first else None,
                "unreported_requests": sum(v[0] for _, v in infer),
                "unreported_rows": sum(v[1] for _, v in infer),
                "days": len(days), "from_day": _day_text(days[0]) if days else None,
                "to_day": _day_text(days[-1]) if days else None,
                "salt_known": u.salt is not None}
    except OemkitError as exc:
        doc.update(present=True, error={"code": exc.code, "message": exc.message,
                                        "hint": exc.hint})
    unsaved = []
    for file in unsaved_files(state_path):
        entry: dict[str, Any] = {"name": file.name}
        try:
            loaded = _load_unsaved(file)
            if loaded is None:
                continue
            entry["requests"] = sum(v[0] for (_, _, f), v in loaded[1].items()
                                    if f == "infer")
        except OemkitError as exc:
            entry["error"] = {"code": exc.code, "message": exc.message, "hint": exc.hint}
        unsaved.append(entry)
    doc["unsaved"] = unsaved
    return doc


# --------------------------------------------------------------------------- reports


@dataclass(frozen=True)
class MadeReport:
    """A report written by :func:`make_report`: its claims, bytes and digest."""

    report: Any
    data: bytes
    digest: str


def host_identity(salt: str, host: Mapping[str, Sequence[str]] | None = None) -> Any:
    """This host's :class:`~oemkit.models.usage.HostIdentity` under ``salt`` (the keyed
    hashes a fingerprint file made with that salt holds)."""
    from oemkit.host.license_state import collect_host, fingerprint
    from oemkit.models.usage import HostIdentity

    fp = fingerprint(collect_host() if host is None else host, salt=salt)
    return HostIdentity(salt, tuple((c["kind"], c["hash"]) for c in fp["components"]))


def pick_license(state: UsageState, wanted: str | None, candidates: Sequence[str]) -> str:
    """The license to report: ``wanted``, else the one of ``candidates`` (the install's
    licenses) the state has counts for, else the state's only one.

    Raises:
        InputError: E_USAGE_NO_DATA (nothing was metered for it).
        UsageError: E_USAGE (several licenses were metered: choose one).
    """
    known = sorted(state.licenses)
    if wanted is not None:
        if wanted not in state.licenses:
            raise InputError("E_USAGE_NO_DATA", f"nothing was metered for license {wanted} "
                             f"on this host (metered: {', '.join(known) or 'none'})",
                             hint="serve under a license issued with --metering first, or "
                                  "pass the --state the runtime uses")
        return wanted
    found = [lid for lid in candidates if lid in state.licenses] or known
    if not found:
        raise InputError("E_USAGE_NO_DATA", "nothing was metered on this host yet",
                         hint="serve under a license issued with --metering first, or pass "
                              "the --state the runtime uses")
    if len(found) > 1:
        raise UsageError("E_USAGE", f"usage was metered for several licenses "
                         f"({', '.join(found)})", hint="choose one with --license-id")
    return found[0]


def make_report(state_path: Path, key: PrivateKeyInfo, out: Path, *,
                license_id: str | None = None, candidates: Sequence[str] = (),
                salt: str | None = None, host: Mapping[str, Sequence[str]] | None = None,
                now: dt.datetime | None = None) -> MadeReport:
    """Sign what was counted since the last report into ``out`` and close it in the state.

    Under the state lock: the report gets the next sequence number, the previous report's
    digest, the period from the last report's end (or the first count) to ``max(now,
    last_seen)``, and this host's fingerprint under ``salt`` (default: the license's
    hardware binding's). ``out`` is written first; only then are the counts taken from the
    state, and if that fails ``out`` is removed again, so no report exists that the state
    does not know.

    Raises:
        InputError: E_USAGE_NO_DATA, E_LOCK_UNSAFE, E_CANONICAL.
        UsageError: E_USAGE (several licenses and no --license-id; no salt known).
        EnvironmentProblem: E_USAGE_STATE, E_PERMISSION, E_LOCKED, E_WRITE.
    """
    from oemkit._fs import atomic_write_bytes
    from oemkit._time import now as utc_now
    from oemkit.crypto.keys import public_pem
    from oemkit.host.license_state import state_lock
    from oemkit.models.usage import MAX_COUNTS, UsageCount, UsageReport, seal_report

    path = usage_path(state_path)
    with state_lock(state_path):
        state = _read(path)
        added, _ = _merge_unsaved(state_path, state, dt.datetime.fromtimestamp(0, UTC))
        lid = pick_license(state, license_id, candidates)
        u = state.licenses[lid]
        use_salt = salt or u.salt
        if use_salt is None:
            raise UsageError("E_USAGE", f"license {lid} has no hardware binding, so the "
                             "report needs the fingerprint the vendor holds for this host",
                             hint="pass --fingerprint FILE (made here with 'oemkit license "
                                  "fingerprint')")
        moment = now or utc_now()
        end = max(t for t in (moment, state.last_seen, _license_seen(state_path)) if t)
        last_day = max((d for d, _, _ in u.model_counts), default=_epoch_day(end))
        end = max(end, dt.datetime.fromtimestamp(last_day * _DAY_S, UTC))
        start = u.reported_until or u.first or end
        taken = sorted(u.model_counts.items())
        left: list[tuple[tuple[int, str, str], list[int]]] = []
        if len(taken) > MAX_COUNTS:  # whole days up to the bound; the rest goes next time
            cut = taken[MAX_COUNTS][0][0]
            taken, left = ([t for t in taken if t[0][0] < cut],
                           [t for t in taken if t[0][0] >= cut])
            end = max(start, dt.datetime.fromtimestamp(cut * _DAY_S, UTC))
        counts = tuple(UsageCount(_day_text(d), m, f, v[0], v[1]) for (d, m, f), v in taken)
        report = UsageReport(lid, u.seq + 1, moment, start, end, host_identity(use_salt, host),
                             public_pem(key.public), counts, u.prev)
        data, digest = seal_report(key, report)
        try:
            atomic_write_bytes(out, data)
        except OSError as exc:
            raise EnvironmentProblem("E_WRITE", f"cannot write the report {out}: "
                                     f"{exc.strerror or exc}; nothing was reported",
                                     hint="choose another --out") from None
        u.seq, u.prev, u.reported_until = report.seq, digest, end
        u.model_counts = dict(left)
        u.first = end if left else None
        state.last_seen = max(t for t in (end, state.last_seen) if t)
        try:
            _write(path, state)
        except OemkitError:
            out.unlink(missing_ok=True)
            raise
        _remove_merged(added)
    return MadeReport(report, data, digest)
