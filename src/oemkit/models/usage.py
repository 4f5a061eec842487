"""The usage report (``.oemu``) and the vendor's ledger: typed, strictly parsed, and the
pure check a vendor runs before billing a disconnected customer (docs/USAGE.md).

A report is an armored DSSE envelope (label ``OEMKIT USAGE REPORT``), signed once by the
customer host's key, over the RFC 8785 canonical JSON of :class:`UsageReport`: the license
id, a sequence number that grows by one per report, the digest of the previous report
(a chain), the period covered, the host's salted fingerprint and the inference counts per
UTC day, model and feature. :func:`verify_report` checks, in this order, the armor and
envelope, the signing key (pinned, from the ledger, or the report's own), the signature
over the exact bytes, the claims, the fingerprint, then the sequence against the ledger:
a replayed, reordered, edited or foreign report is a coded refusal. No I/O, no clock.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from oemkit._time import format_time
from oemkit.errors import FormatError, InputError, VerificationError
from oemkit.models.license import is_license_id, parse_signed_time

if TYPE_CHECKING:
    from oemkit.crypto.keys import PrivateKeyInfo, PublicKey

REPORT_TYPE = "oemkit-usage-report/v1"
REPORT_PAYLOAD_TYPE = "application/vnd.oemkit.usage+json"
REPORT_LABEL = "OEMKIT USAGE REPORT"
LEDGER_TYPE = "oemkit-usage-ledger/v1"
#: Count rows one report may hold, so that it stays well inside the 64 KiB an armored
#: document may have (``oemkit usage report`` leaves later days to the next report).
MAX_COUNTS = 300
_HEX = re.compile(r"[0-9a-f]{64}")
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
_MAX_INT = (1 << 53) - 1


def _bad(message: str) -> FormatError:
    return FormatError("E_USAGE_INVALID", f"usage report: {message}", check="usage report",
                       hint="the report was not written by a compatible oemkit; make a new "
                            "one with 'oemkit usage report'")


def _refuse(code: str, message: str, hint: str, **fields: str | None) -> VerificationError:
    return VerificationError(code, message, hint=hint, check="usage report", **fields)


def _only(data: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = set(data) - allowed
    if unknown:
        raise _bad(f"unknown field(s) {sorted(unknown)} in {where}")


def _count(value: Any, where: str) -> int:
    if type(value) is not int or not 0 <= value <= _MAX_INT:
        raise _bad(f"{where} must be an integer from 0 to 2^53-1")
    return value


def _time(value: Any, where: str) -> dt.datetime:
    try:
        return parse_signed_time(value)
    except ValueError:
        raise _bad(f"{where} must be a UTC time written YYYY-MM-DDTHH:MM:SSZ, got "
                   f"{value!r:.60}") from None


def day_of(moment: dt.datetime) -> str:
    """The UTC day of ``moment`` as ``YYYY-MM-DD`` (what counts are grouped by)."""
    return format_time(moment)[:10]


def is_day(value: object) -> bool:
    """Whether ``value`` is a real calendar day written ``YYYY-MM-DD``."""
    if not isinstance(value, str) or not _DAY.fullmatch(value):
        return False
    try:
        dt.date(int(value[:4]), int(value[5:7]), int(value[8:]))
    except ValueError:
        return False
    return True


def is_name(value: object) -> bool:
    """Whether ``value`` may name a model or a feature in a report (1-128 of A-Z a-z 0-9
    . _ : -, alphanumeric first)."""
    return isinstance(value, str) and _NAME.fullmatch(value) is not None


def fingerprint_digest(salt: str, components: Any) -> str:
    """``sha256:`` of the canonical JSON of ``{salt, components}`` with the components
    sorted by kind and hash: the same digest for a fingerprint file and for a report made
    with its salt on the same hardware, whatever the order they were listed in."""
    from oemkit._canonical import canonical_json

    comps = sorted(({"kind": k, "hash": h} for k, h in components),
                   key=lambda c: (c["kind"], c["hash"]))
    return "sha256:" + hashlib.sha256(canonical_json(
        {"salt": salt, "components": comps})).hexdigest()


@dataclass(frozen=True)
class UsageCount:
    """Inferences answered on one UTC ``day`` by ``model`` using ``feature`` (``infer``
    for every inference; a runtime feature such as ``classification`` besides), as
    requests and as rows (a batched request of 8 rows is 1 request, 8 rows)."""

    day: str
    model: str
    feature: str
    requests: int
    rows: int

    def to_dict(self) -> dict[str, Any]:
        """The count as its report JSON."""
        return {"day": self.day, "model": self.model, "feature": self.feature,
                "requests": self.requests, "rows": self.rows}


@dataclass(frozen=True)
class HostIdentity:
    """The host as the report states it: keyed hashes of its components (HMAC-SHA256
    under ``salt``, as a fingerprint file holds them), never raw ids."""

    salt: str
    components: tuple[tuple[str, str], ...]

    @property
    def digest(self) -> str:
        """:func:`fingerprint_digest` of this identity."""
        return fingerprint_digest(self.salt, self.components)

    def to_dict(self) -> dict[str, Any]:
        """The identity as its report JSON (the digest included)."""
        return {"salt": self.salt, "digest": self.digest,
                "components": [{"kind": k, "hash": h} for k, h in self.components]}


def _totals(counts: tuple[UsageCount, ...]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for c in counts:
        entry = out.setdefault(c.feature, {"requests": 0, "rows": 0})
        entry["requests"] += c.requests
        entry["rows"] += c.rows
    return dict(sorted(out.items()))


@dataclass(frozen=True)
class UsageReport:
    """Everything a usage report says, as signed."""

    license_id: str
    seq: int
    created: dt.datetime
    period_start: dt.datetime
    period_end: dt.datetime
    host: HostIdentity
    host_key: str
    counts: tuple[UsageCount, ...] = ()
    prev: str | None = None

    @property
    def totals(self) -> dict[str, dict[str, int]]:
        """Requests and rows per feature over the whole period."""
        return _totals(self.counts)

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON data (the inverse of :meth:`from_dict`)."""
        out: dict[str, Any] = {
            "type": REPORT_TYPE, "license_id": self.license_id, "seq": self.seq,
            "created": format_time(self.created),
            "period": {"start": format_time(self.period_start),
                       "end": format_time(self.period_end)},
            "host": self.host.to_dict(), "host_key": self.host_key,
            "counts": [c.to_dict() for c in sorted(
                self.counts, key=lambda c: (c.day, c.model, c.feature))],
            "totals": self.totals,
        }
        if self.prev is not None:
            out["prev"] = self.prev
        return out

    @classmethod
    def from_dict(cls, data: Any) -> UsageReport:
        """Parse a report payload strictly: unknown fields, nulls, floats, wrong types, a
        count outside its period, a duplicated row or totals that do not add up are
        refused.

        Raises:
            FormatError: E_USAGE_INVALID.
        """
        if not isinstance(data, dict):
            raise _bad("not a JSON object")
        if data.get("type") != REPORT_TYPE:
            raise _bad(f"type is {data.get('type')!r:.60}, not {REPORT_TYPE}")
        _only(data, {"type", "license_id", "seq", "created", "period", "host", "host_key",
                     "counts", "totals", "prev"}, "the report")
        license_id = data.get("license_id")
        if not is_license_id(license_id):
            raise _bad("license_id must be 1-64 of A-Z a-z 0-9 . _ - (alphanumeric first)")
        assert isinstance(license_id, str)
        seq = _count(data.get("seq"), "seq")
        if seq < 1:
            raise _bad("seq must be at least 1")
        prev = data.get("prev")
        if "prev" in data and (not isinstance(prev, str) or not _DIGEST.fullmatch(prev)):
            raise _bad("prev must be sha256:<64 hex>")
        if (prev is None) != (seq == 1):
            raise _bad("prev (the digest of the previous report) is set exactly when seq "
                       "is above 1")
        period = data.get("period")
        if not isinstance(period, dict) or set(period) != {"start", "end"}:
            raise _bad("period must be exactly {start, end}")
        start, end = _time(period["start"], "period.start"), _time(period["end"], "period.end")
        created = _time(data.get("created"), "created")
        if end < start:
            raise _bad("period.end is before period.start")
        host = _host(data.get("host"))
        key = data.get("host_key")
        if not isinstance(key, str) or "PUBLIC KEY-----" not in key or not key.isascii():
            raise _bad("host_key must be the host's PEM public key")
        counts = _counts(data.get("counts"), day_of(start), day_of(end))
        report = cls(license_id, seq, created, start, end, host, key, counts, prev)
        if data.get("totals") != report.totals:
            raise _bad("totals do not add up to the counts")
        return report


def _host(data: Any) -> HostIdentity:
    if not isinstance(data, dict) or set(data) != {"salt", "digest", "components"}:
        raise _bad("host must be exactly {salt, digest, components}")
    salt = data["salt"]
    if not isinstance(salt, str) or not _HEX.fullmatch(salt):
        raise _bad("host.salt must be 64 lower-case hex digits")
    comps = data["components"]
    if not isinstance(comps, list):
        raise _bad("host.components must be a list")
    parsed = []
    for i, c in enumerate(comps):
        if (not isinstance(c, dict) or set(c) != {"kind", "hash"}
                or not isinstance(c["kind"], str) or not c["kind"]
                or not isinstance(c["hash"], str) or not _HEX.fullmatch(c["hash"])):
            raise _bad(f"host.components[{i}] must be exactly {{kind, hash (64 hex)}}")
        parsed.append((c["kind"], c["hash"]))
    host = HostIdentity(salt, tuple(parsed))
    if data["digest"] != host.digest:
        raise _bad("host.digest is not the digest of host.salt and host.components")
    return host


def _counts(data: Any, first: str, last: str) -> tuple[UsageCount, ...]:
    if not isinstance(data, list):
        raise _bad("counts must be a list")
    if len(data) > MAX_COUNTS:
        raise _bad(f"counts has {len(data)} rows, more than {MAX_COUNTS}")
    out, seen = [], set()
    for i, c in enumerate(data):
        if not isinstance(c, dict) or set(c) != {"day", "model", "feature", "requests",
                                                 "rows"}:
            raise _bad(f"counts[{i}] must be exactly {{day, model, feature, requests, rows}}")
        if not is_day(c["day"]):
            raise _bad(f"counts[{i}].day must be a day written YYYY-MM-DD")
        if not first <= c["day"] <= last:
            raise _bad(f"counts[{i}].day {c['day']} is outside the period {first}..{last}")
        if not is_name(c["model"]) or not is_name(c["feature"]):
            raise _bad(f"counts[{i}]: model and feature must be 1-128 of A-Z a-z 0-9 . _ : -")
        key = (c["day"], c["model"], c["feature"])
        if key in seen:
            raise _bad(f"counts[{i}] repeats {'/'.join(key)}")
        seen.add(key)
        out.append(UsageCount(c["day"], c["model"], c["feature"],
                              _count(c["requests"], f"counts[{i}].requests"),
                              _count(c["rows"], f"counts[{i}].rows")))
    return tuple(out)


def seal_report(key: PrivateKeyInfo, report: UsageReport) -> tuple[bytes, str]:
    """The armored report signed by ``key`` (its public half must be ``host_key``) and the
    digest of its payload (what the next report names as ``prev``).

    Raises:
        FormatError: E_USAGE_INVALID (a report a verifier would refuse is never signed).
        InputError: E_CANONICAL.
    """
    from oemkit._canonical import canonical_json, parse_json
    from oemkit.crypto.armor import armor, sign_document
    from oemkit.crypto.keys import key_id, load_public

    payload = canonical_json(report.to_dict())
    UsageReport.from_dict(parse_json(payload, what="usage report"))
    if key_id(load_public(report.host_key, "host_key")) != key.keyid:
        raise _bad("host_key is not the public half of the signing key")
    digest = "sha256:" + hashlib.sha256(payload).hexdigest()
    return armor(REPORT_LABEL, sign_document(key, REPORT_PAYLOAD_TYPE, payload)), digest


# --------------------------------------------------------------------------- the ledger


@dataclass(frozen=True)
class LedgerEntry:
    """What the vendor has accepted for one license: the newest report's sequence number,
    digest and period end, and the host key that signed it (pinned from the first)."""

    seq: int
    digest: str
    end: dt.datetime
    host_key_id: str

    def to_dict(self) -> dict[str, Any]:
        """The entry as its ledger JSON."""
        return {"seq": self.seq, "digest": self.digest, "end": format_time(self.end),
                "host_key_id": self.host_key_id}


def _ledger_bad(message: str) -> InputError:
    return InputError("E_USAGE_LEDGER", f"usage ledger: {message}",
                      hint="pass the ledger file 'oemkit usage verify --record' writes, or "
                           "restore it from a backup")


@dataclass(frozen=True)
class Ledger:
    """The vendor's record of accepted reports, one :class:`LedgerEntry` per license."""

    entries: dict[str, LedgerEntry] = field(default_factory=dict)

    def to_bytes(self) -> bytes:
        """The ledger file (pretty JSON, sorted)."""
        import json

        doc = {"type": LEDGER_TYPE, "licenses": {k: v.to_dict()
                                                 for k, v in sorted(self.entries.items())}}
        return (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()

    @classmethod
    def from_bytes(cls, data: bytes, what: str = "usage ledger") -> Ledger:
        """Parse a ledger file strictly.

        Raises:
            InputError: E_USAGE_LEDGER (not a ledger, or a malformed entry).
        """
        from oemkit._canonical import parse_json

        try:
            obj = parse_json(data, what=what, code="E_USAGE_LEDGER")
        except InputError as exc:
            raise _ledger_bad(exc.message) from None
        if not isinstance(obj, dict) or obj.get("type") != LEDGER_TYPE or set(obj) != {
                "type", "licenses"} or not isinstance(obj["licenses"], dict):
            raise _ledger_bad(f"{what} is not an {LEDGER_TYPE} document")
        entries = {}
        for lid, raw in obj["licenses"].items():
            if not is_license_id(lid) or not isinstance(raw, dict) or set(raw) != {
                    "seq", "digest", "end", "host_key_id"}:
                raise _ledger_bad(f"the entry {lid!r:.60} must be exactly {{seq, digest, "
                                  "end, host_key_id}}")
            seq, digest, keyid = raw["seq"], raw["digest"], raw["host_key_id"]
            if type(seq) is not int or seq < 1 or not isinstance(digest, str) or not \
                    _DIGEST.fullmatch(digest) or not isinstance(keyid, str) or not \
                    _HEX.fullmatch(keyid):
                raise _ledger_bad(f"the entry {lid} has a bad seq, digest or host_key_id")
            try:
                end = parse_signed_time(raw["end"])
            except ValueError:
                raise _ledger_bad(f"the entry {lid} has a bad end time") from None
            entries[lid] = LedgerEntry(seq, digest, end, keyid)
        return cls(entries)

    def record(self, verified: VerifiedReport) -> Ledger:
        """This ledger with ``verified`` as its license's newest accepted report."""
        r = verified.report
        return Ledger({**self.entries, r.license_id: LedgerEntry(
            r.seq, verified.digest, r.period_end, verified.keyid)})


# --------------------------------------------------------------------------- verification


@dataclass(frozen=True)
class VerifiedReport:
    """A report that passed :func:`verify_report`: its claims, the payload's digest, the
    id of the host key that signed it, and how many fingerprint components matched."""

    report: UsageReport
    digest: str
    keyid: str
    matched: int
    of: int

    def to_dict(self) -> dict[str, Any]:
        """What ``oemkit usage verify --json`` prints (after its ``ok``)."""
        return {"digest": self.digest, "host_key_id": self.keyid,
                "fingerprint": {"matched": self.matched, "of": self.of},
                "report": self.report.to_dict()}


def _signer(doc: Any, payload: Any, pinned: PublicKey | None, ledger_key: str | None,
            what: str) -> PublicKey:
    """The key the report must be signed by: pinned, else the report's own (whose id must
    be the ledger's when the ledger knows this license)."""
    from oemkit.crypto.keys import key_id, load_public

    if pinned is not None:
        public, source = pinned, "the pinned host key (--host-key)"
    else:
        pem = payload.get("host_key") if isinstance(payload, dict) else None
        if not isinstance(pem, str):
            raise _bad("host_key must be the host's PEM public key")
        try:
            public = load_public(pem, f"{what} host_key")
        except InputError as exc:
            raise _bad(exc.message) from None
        source = "the report's host_key"
        if ledger_key is not None and key_id(public) != ledger_key:
            raise _refuse("E_USAGE_KEY", f"{what} is signed by host key "
                          f"{key_id(public)[:16]}…, not {ledger_key[:16]}…, the key the "
                          "ledger holds for this license", "a report from another host, or "
                          "the host key was replaced: confirm with the customer, then pin "
                          "the new key (--host-key)", expected=ledger_key,
                          actual=key_id(public))
    if doc.keyid != key_id(public):
        raise _refuse("E_USAGE_KEY", f"{what} names signing key {doc.keyid[:16]:.16}…, not "
                      f"{source} {key_id(public)[:16]}…", "pin the host key that belongs "
                      "to this customer's host (--host-key HOST.pub)",
                      expected=key_id(public), actual=doc.keyid[:64])
    return public


def verify_report(data: bytes, *, fingerprint: Mapping[str, Any],
                  host_key: PublicKey | None = None, ledger: Ledger | None = None,
                  last_seq: int | None = None, match: int | None = None,
                  allow_gap: bool = False, what: str = "usage report") -> VerifiedReport:
    """Check a usage report before it is billed (docs/USAGE.md "Verification").

    ``fingerprint`` is the customer's fingerprint file (validated, as
    ``read_fingerprint`` returns it); ``match`` how many of its components the report's
    host must show (default: all). The signing key is ``host_key`` when pinned, else the
    report's own (which must be the one the ledger recorded for the license). The
    sequence is judged against the ledger's entry for the license, else ``last_seq``
    (neither: any first report): not above it is a replay, more than one above it a gap
    (a report missing or delivered out of order) unless ``allow_gap``; the next one must
    name the ledger's newest report as ``prev``.

    Raises:
        InputError: E_TOO_LARGE.
        VerificationError: E_ARMOR, E_ENVELOPE, E_USAGE_INVALID (a payload of another
            type or not canonical, or claims that do not parse), E_USAGE_KEY,
            E_USAGE_SIG_INVALID, E_USAGE_FINGERPRINT, E_USAGE_REPLAY, E_USAGE_GAP,
            E_USAGE_CHAIN.
    """
    from oemkit._canonical import canonical_json, parse_json
    from oemkit.crypto.armor import dearmor, parse_document
    from oemkit.crypto.dsse import verify_signature
    from oemkit.errors import restate

    try:
        doc = parse_document(dearmor(data, REPORT_LABEL, what), what)
        if doc.payload_type != REPORT_PAYLOAD_TYPE:
            raise _bad(f"payload type is {doc.payload_type!r:.80}, not {REPORT_PAYLOAD_TYPE}")
        try:
            obj = parse_json(doc.payload, what=f"{what} payload", code="E_USAGE_INVALID")
        except InputError as exc:
            raise _bad(exc.message) from None
        lid = obj.get("license_id") if isinstance(obj, dict) else None
        entry = ledger.entries.get(lid) if ledger is not None and isinstance(lid, str) \
            else None
        public = _signer(doc, obj, host_key, entry.host_key_id if entry else None, what)
        if not verify_signature(public, doc.payload_type, doc.payload, doc.sig):
            raise _refuse("E_USAGE_SIG_INVALID", f"{what}: the signature does not verify "
                          "over the report's bytes: it was edited after it was signed, or "
                          "signed by another key", "ask the customer for the report file "
                          "exactly as 'oemkit usage report' wrote it")
        report = UsageReport.from_dict(obj)
        if canonical_json(obj) != doc.payload:
            raise _bad("the payload is not canonical JSON (RFC 8785)")
    except FormatError as exc:
        raise restate(exc, VerificationError) from exc
    matched, of = _match_fingerprint(report, fingerprint, match, what)
    _judge_seq(report, entry, last_seq, allow_gap, what)
    from oemkit.crypto.keys import key_id

    return VerifiedReport(report, "sha256:" + hashlib.sha256(doc.payload).hexdigest(),
                          key_id(public), matched, of)


def _match_fingerprint(report: UsageReport, fingerprint: Mapping[str, Any],
                       match: int | None, what: str) -> tuple[int, int]:
    wanted = {(c["kind"], c["hash"]) for c in fingerprint["components"]}
    need = len(wanted) if match is None else min(match, len(wanted))
    hint = ("a report from another host, or made with another fingerprint's salt: pass the "
            "fingerprint this customer's license was issued for")
    if report.host.salt != fingerprint["salt"]:
        raise _refuse("E_USAGE_FINGERPRINT", f"{what} was made with salt "
                      f"{report.host.salt[:16]}…, not the fingerprint's "
                      f"{fingerprint['salt'][:16]}…: it does not come from that host", hint,
                      expected=fingerprint["salt"], actual=report.host.salt)
    got = len(wanted & set(report.host.components))
    if got < need:
        raise _refuse("E_USAGE_FINGERPRINT", f"{what}: {got} of the fingerprint's "
                      f"{len(wanted)} components are on the reporting host, {need} are "
                      "needed", hint + " (or --match K when hardware was replaced)",
                      expected=str(need), actual=str(got))
    return got, len(wanted)


def _judge_seq(report: UsageReport, entry: LedgerEntry | None, last_seq: int | None,
               allow_gap: bool, what: str) -> None:
    last = entry.seq if entry is not None else last_seq
    if last is None:
        return
    seq = report.seq
    if seq <= last:
        raise _refuse("E_USAGE_REPLAY", f"{what} has sequence number {seq}, and report "
                      f"{last} of license {report.license_id} was already accepted: a "
                      "replayed or older report", "each report is billed once; ask the "
                      "customer for a new one ('oemkit usage report')",
                      expected=f"> {last}", actual=str(seq))
    if seq > last + 1 and not allow_gap:
        raise _refuse("E_USAGE_GAP", f"{what} has sequence number {seq}, but the next "
                      f"report of license {report.license_id} is {last + 1}: "
                      f"{seq - last - 1} report(s) are missing or arrive out of order",
                      f"verify report {last + 1} first, or pass --allow-gap to bill from "
                      "this one on", expected=str(last + 1), actual=str(seq))
    if entry is None:
        return
    if seq == last + 1 and report.prev != entry.digest:
        raise _refuse("E_USAGE_CHAIN", f"{what} (sequence {seq}) does not follow the "
                      f"accepted report {last}: it names {report.prev} as its predecessor, "
                      f"not {entry.digest}", "the host's usage state was restored or "
                      "copied from elsewhere; ask the customer what happened before "
                      "billing", expected=entry.digest, actual=report.prev)
    if report.period_start < entry.end:
        raise _refuse("E_USAGE_CHAIN", f"{what} starts at {format_time(report.period_start)}"
                      f", before the end {format_time(entry.end)} of the accepted report "
                      f"{last}: the periods overlap", "ask the customer what happened "
                      "to the host's usage state before billing",
                      expected=f">= {format_time(entry.end)}",
                      actual=format_time(report.period_start))
