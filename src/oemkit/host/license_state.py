"""License verification on a host: the state file, the host's hardware facts, and the glue
that feeds them (and an optional bundle's CRL and binding facts) to the pure verifier.

The state file (docs/LICENSE-FORMAT.md section 10) is read, judged and written under one
lock (``<state>.lock`` beside it, taken with ``oemkit._lock``), and every write merges
with what is on disk field by field, never backwards: the latest ``last_seen``, per vendor
the CRL with the highest sequence, the highest re-issue number per license. So two
verifications at once cannot forget a revocation either one recorded. It is written
atomically with mode 0600 (folder 0700); a failed write (a full disk) is ``E_WRITE`` and
leaves the old file as it was.

What can be read is judged: a missing file is a warning; content that is not a state
file (not strict JSON, too deep, too large, a counter that is not a non-negative integer,
a bad time) is set aside as ``<name>.corrupt`` with a warning; either way verification
falls back to the newest signed issue time, never to "anything goes". What cannot be used
at all is a coded error before any verdict: a directory or special file at the path
(``E_STATE_UNUSABLE``), a file oemkit may not read (``E_PERMISSION``), a folder that
cannot be made (``E_WRITE``). A state file or folder others may write is used with a
warning (and rewritten 0600).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import json
import os
import re
import secrets
import stat
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from oemkit._canonical import parse_json
from oemkit._fs import atomic_write_bytes, read_input
from oemkit._lock import exclusive_lock
from oemkit._time import format_time, parse_time
from oemkit._time import now as utc_now
from oemkit.errors import EnvironmentProblem, InputError, OemkitError, restate
from oemkit.models.license import FINGERPRINT_TYPE
from oemkit.models.trust import TrustRoot
from oemkit.verify.license import (
    BundleFacts,
    LicenseState,
    Verdict,
    component_hash,
    evaluate,
    pending_state,
    utc_moment,
)

STATE_TYPE = "oemkit-license-state/v2"
_STATE_V1 = "oemkit-license-state/v1"
#: A state file larger than this is set aside unread (64 vendors with 64 KiB CRLs fit).
MAX_STATE_BYTES = 4 << 20
#: How long a verification waits for another one to release the state lock (E_LOCKED).
LOCK_WAIT_SECONDS = 10.0
_LOCK_POLL_SECONDS = 0.01
_WRITE_HINT = ("free space or fix the permissions there, or pass another state file "
               "(--state, $OEMKIT_STATE)")


def default_state_path() -> Path:
    """$OEMKIT_STATE, else $XDG_STATE_HOME/oemkit/license-state.json (~/.local/state)."""
    explicit = os.environ.get("OEMKIT_STATE")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "oemkit" / "license-state.json"


@dataclass
class _Issuer:
    """What the host remembers of one vendor: its trust root's root keys (the lineage:
    oemkit never drops a key from a trust root, so every later version shares one), its
    newest CRL and the re-issue numbers of its licenses."""

    root_keys: set[str]
    crl: bytes | None = None
    crl_seq: int = 0
    seqs: dict[str, int] = field(default_factory=dict)

    def merge(self, state: LicenseState) -> None:
        """Fold ``state`` in, never backwards: the newer CRL, the higher numbers."""
        if state.crl_seq > self.crl_seq or (state.crl_seq == self.crl_seq
                                            and state.crl is not None):
            self.crl, self.crl_seq = state.crl, state.crl_seq
        for license_id, seq in state.seqs.items():
            self.seqs[license_id] = max(seq, self.seqs.get(license_id, 0))


@dataclass
class _StateFile:
    """The whole file: one clock for the host, one :class:`_Issuer` per vendor. A v1 file
    (one unscoped issuer) is read as an issuer with no root keys, which the first trust
    root that uses the file adopts."""

    last_seen: dt.datetime | None = None
    issuers: list[_Issuer] = field(default_factory=list)

    def issuer(self, root: TrustRoot | None, *, add: bool = False) -> _Issuer:
        ids = _root_keys(root)
        for issuer in self.issuers:
            if issuer.root_keys & ids:
                return issuer
        for issuer in self.issuers:
            if not issuer.root_keys:  # a v1 file's only issuer, not yet adopted
                return issuer
        if root is None and self.issuers:
            return self.issuers[0]
        found = _Issuer(set())
        if add:
            self.issuers.append(found)
        return found

    def view(self, root: TrustRoot | None) -> LicenseState:
        issuer = self.issuer(root)
        return LicenseState(last_seen=self.last_seen, crl=issuer.crl, crl_seq=issuer.crl_seq,
                            seqs=dict(issuer.seqs))

    def to_bytes(self) -> bytes:
        doc = {"type": STATE_TYPE,
               "last_seen": format_time(self.last_seen) if self.last_seen else None,
               "issuers": [{"root_keys": sorted(i.root_keys),
                            "crl": i.crl.decode("ascii") if i.crl else None,
                            "crl_seq": i.crl_seq, "seqs": dict(sorted(i.seqs.items()))}
                           for i in self.issuers]}
        return (json.dumps(doc, indent=2) + "\n").encode()


def _root_keys(root: TrustRoot | None) -> set[str]:
    return {k.keyid for k in root.keys if "root" in k.usage} if root is not None else set()


class _Corrupt(ValueError):
    """The bytes are not a license state file (the message says why)."""


def _count(value: object, what: str) -> int:
    """A counter: an exact non-negative integer (not a float such as 1e400, not true)."""
    if type(value) is not int or value < 0:
        raise _Corrupt(f"{what} must be a non-negative integer, not {value!r:.40}")
    return value


def _parse_state(data: bytes) -> _StateFile:
    """Strict: JSON as ``parse_json`` reads it (UTF-8, no duplicate keys, no NaN or
    Infinity, depth <= 64), then every field exactly typed; anything else is _Corrupt."""
    if len(data) > MAX_STATE_BYTES:
        raise _Corrupt(f"larger than {MAX_STATE_BYTES} bytes")
    try:
        obj = parse_json(data, what="the state", code="E_STATE_INVALID")
    except InputError as exc:
        raise _Corrupt(exc.message) from None
    if not isinstance(obj, dict) or obj.get("type") not in (STATE_TYPE, _STATE_V1):
        raise _Corrupt("not an oemkit license state")
    raw_issuers = obj.get("issuers", []) if obj["type"] == STATE_TYPE else [
        {"root_keys": [], "crl": obj.get("crl"), "crl_seq": obj.get("crl_seq", 0),
         "seqs": obj.get("seqs", {})}]
    if not isinstance(raw_issuers, list):
        raise _Corrupt("issuers is malformed")
    issuers = []
    for n, raw in enumerate(raw_issuers):
        if not isinstance(raw, dict):
            raise _Corrupt(f"issuers[{n}] is not an object")
        seqs = raw.get("seqs", {})
        if not isinstance(seqs, dict):
            raise _Corrupt("seqs is malformed")
        counts = {str(k): _count(v, f"seqs[{k!r:.40}]") for k, v in seqs.items()}
        keys = raw.get("root_keys", [])
        if not isinstance(keys, list) or any(not isinstance(k, str) for k in keys):
            raise _Corrupt("root_keys is malformed")
        crl = raw.get("crl")
        if crl is not None and (not isinstance(crl, str) or not crl.isascii()):
            raise _Corrupt("crl must be the armored text of a CRL or null")
        issuers.append(_Issuer(set(keys), crl.encode("ascii") if crl else None,
                               _count(raw.get("crl_seq", 0), "crl_seq"), counts))
    last_seen = obj.get("last_seen")
    try:
        seen = parse_time(last_seen, "last_seen") if last_seen is not None else None
    except InputError as exc:
        raise _Corrupt(str(exc)) from None
    return _StateFile(seen, issuers)


def _unusable(path: Path, what: str) -> EnvironmentProblem:
    return EnvironmentProblem("E_STATE_UNUSABLE", f"the license state {path} is {what}, not a "
                              "file oemkit can use", hint="move it away (oemkit creates the "
                              "state file itself), or pass another state file (--state, "
                              "$OEMKIT_STATE)")


def _read_bytes(path: Path) -> tuple[bytes | None, list[str]]:
    """The state file's bytes (at most MAX_STATE_BYTES + 1; None when there is none) and
    warnings about who else may write it. A path that is no regular file, or one that may
    not be read, is a coded error: judging without it and then replacing it would forget
    what it remembers."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None, []
    except PermissionError as exc:
        raise EnvironmentProblem("E_PERMISSION", f"cannot read the license state {path}: "
                                 f"{exc.strerror}", hint="run as the user that owns it, or "
                                 "fix its permissions (oemkit writes it 0600)") from None
    except OSError as exc:
        if exc.errno == errno.ENOTDIR:
            raise _unusable(path, "below something that is not a folder") from None
        raise _unusable(path, f"unreadable ({exc.strerror})") from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise _unusable(path, "a directory")
        if not stat.S_ISREG(info.st_mode):
            raise _unusable(path, "a special file")
        chunks, left = [], MAX_STATE_BYTES + 1
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
    except OSError as exc:
        raise _unusable(path, f"unreadable ({exc.strerror})") from None
    finally:
        os.close(fd)
    return b"".join(chunks), _writable_by_others(path, info)


def _writable_by_others(path: Path, info: os.stat_result) -> list[str]:
    """Warnings (not refusals: the next write replaces the file with a 0600 one, and a
    changed file can only make the host forget, which signed issue times still bound)."""
    out = []
    if info.st_mode & 0o022:
        out.append(f"the license state {path} is writable by other users (mode "
                   f"{stat.S_IMODE(info.st_mode):04o}): anyone on this host could have "
                   "changed what it remembers; it is rewritten with mode 0600")
    with contextlib.suppress(OSError):
        folder = os.stat(path.parent)
        if folder.st_mode & 0o002 and not folder.st_mode & stat.S_ISVTX:
            out.append(f"the folder {path.parent} holding the license state is writable "
                       "by every user (mode "
                       f"{stat.S_IMODE(folder.st_mode):04o}, no sticky bit): anyone could "
                       "replace the state; keep it in a folder only its owner can write")
    return out


def _read_state(path: Path) -> tuple[_StateFile, list[str]]:
    """The whole state file and the warnings about it; corrupt content is set aside."""
    data, notes = _read_bytes(path)
    if data is None:
        return _StateFile(), [f"no license state at {path} yet: judging at the newest signed "
                              "issue time; the state will be created"]
    try:
        return _parse_state(data), notes
    except _Corrupt as exc:
        aside = path.with_name(path.name + ".corrupt")
        try:
            os.replace(path, aside)
            kept = f"; kept as {aside}"
        except OSError:
            kept = ""
        return _StateFile(), [*notes, f"license state {path} is corrupt ({exc}){kept}: "
                                      "judging at the newest signed issue time"]


def _make_folder(path: Path) -> None:
    """The state's folder (made 0700 if missing); E_WRITE naming why it cannot be."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        why = None if path.parent.is_dir() else "a file is in the way"
    except (FileExistsError, NotADirectoryError):
        why = "a file is in the way"
    except OSError as exc:
        why = exc.strerror or str(exc)
    if why is not None:
        raise EnvironmentProblem("E_WRITE", f"cannot create the folder {path.parent} for the "
                                 f"license state: {why}", hint=_WRITE_HINT)


@contextlib.contextmanager
def state_lock(path: Path) -> Iterator[None]:
    """Hold ``<path>.lock`` (``oemkit._lock``) while reading, judging and writing ``path``:
    wait up to LOCK_WAIT_SECONDS for another verification to finish, then E_LOCKED."""
    _make_folder(path)
    lock = path.with_name(path.name + ".lock")
    deadline = time.monotonic() + LOCK_WAIT_SECONDS
    with contextlib.ExitStack() as stack:
        while True:
            try:
                stack.enter_context(exclusive_lock(lock, f"the license state {path}"))
                break
            except EnvironmentProblem as exc:
                if exc.code != "E_LOCKED" or time.monotonic() >= deadline:
                    raise
                _pause()
        yield


def _pause() -> None:
    time.sleep(_LOCK_POLL_SECONDS)


def load_state(path: Path, root: TrustRoot | None = None) -> tuple[LicenseState, str | None]:
    """The remembered state for licenses under ``root`` (its vendor's CRL and re-issue
    numbers; the host's clock reading is shared) and, when it was not clean, why."""
    whole, notes = _read_state(path)
    return whole.view(root), "; ".join(notes) or None


def save_state(path: Path, state: LicenseState, root: TrustRoot | None = None) -> None:
    """Merge ``state`` into ``root``'s vendor's part of the file (under the lock)."""
    with state_lock(path):
        _save(path, state, root)


def _save(path: Path, state: LicenseState, root: TrustRoot | None) -> None:
    """Merge with what is on disk now (the lock is held) and write atomically; E_WRITE
    (the old file intact) when that fails."""
    data, _ = _read_bytes(path)
    try:
        whole = _parse_state(data) if data is not None else _StateFile()
    except _Corrupt:
        whole = _StateFile()  # load_state has set a corrupt one aside (or could not)
    issuer = whole.issuer(root, add=True)
    issuer.root_keys |= _root_keys(root)
    issuer.merge(state)
    if state.last_seen is not None:
        whole.last_seen = max(state.last_seen, whole.last_seen or state.last_seen)
    try:
        atomic_write_bytes(path, whole.to_bytes(), mode=0o600)
    except OSError as exc:
        raise EnvironmentProblem("E_WRITE", f"cannot write the license state {path}: "
                                 f"{exc.strerror or exc}; it is unchanged",
                                 hint=_WRITE_HINT) from None


# --------------------------------------------------------------------------- host facts


def collect_host(root: Path = Path("/")) -> dict[str, list[str]]:
    """Raw hardware ids of this host by kind. They never leave it: only keyed hashes do."""
    out: dict[str, list[str]] = {}

    def read(path: Path) -> str | None:
        try:
            value = path.read_text("utf-8", "replace").strip().lower()
        except OSError:
            return None
        return value or None

    for kind, rel in (("machine-id", "etc/machine-id"),
                      ("dmi-uuid", "sys/class/dmi/id/product_uuid")):
        value = read(root / rel)
        if value:
            out[kind] = [value]
    disks = []
    block = root / "sys" / "block"
    for dev in sorted(block.iterdir()) if block.is_dir() else []:
        if dev.name.startswith(("loop", "ram", "zram", "dm-")):
            continue
        serial = read(dev / "device" / "serial") or read(dev / "serial")
        if serial:
            disks.append(serial)
    if disks:
        out["disk-serial"] = disks
    macs = []
    net = root / "sys" / "class" / "net"
    for iface in sorted(net.iterdir()) if net.is_dir() else []:
        if iface.name == "lo" or "/virtual/" in os.path.realpath(iface):
            continue
        mac = read(iface / "address")
        if mac and mac != "00:00:00:00:00:00":
            macs.append(mac)
    if macs:
        out["mac"] = macs
    cluster = os.environ.get("OEMKIT_K8S_CLUSTER_UID")
    if cluster:
        out["k8s-cluster-uid"] = [cluster.strip().lower()]
    return out


def fingerprint(host: Mapping[str, Sequence[str]], *, salt: str | None = None,
                created: dt.datetime | None = None) -> dict[str, Any]:
    """What the customer sends the vendor: a fresh salt and keyed hashes, no raw ids."""
    salt = salt or secrets.token_hex(32)
    comps = [{"kind": kind, "hash": component_hash(salt, kind, value)}
             for kind in sorted(host) for value in host[kind]]
    return {"type": FINGERPRINT_TYPE, "salt": salt,
            "created": format_time(created or utc_now()), "components": comps}


_HEX64 = re.compile(r"[0-9a-f]{64}")


def read_fingerprint(path: Path) -> dict[str, Any]:
    """A fingerprint file, validated in full (InputError E_FINGERPRINT naming the problem).

    ``salt`` is 64 lower-case hex digits and ``components`` a non-empty list of exactly
    ``{kind: non-empty string, hash: 64 lower-case hex}``: what ``fingerprint`` writes.
    """
    from oemkit._canonical import parse_json

    obj = parse_json(read_input(path, "fingerprint", 1 << 20), what=str(path),
                     code="E_FINGERPRINT")

    def bad(problem: str) -> InputError:
        return InputError("E_FINGERPRINT", f"{path} is not an oemkit fingerprint: {problem}",
                          hint="create it on the customer host with 'oemkit license "
                               "fingerprint --out FILE'")

    if not isinstance(obj, dict) or obj.get("type") != FINGERPRINT_TYPE:
        raise bad(f"type is not {FINGERPRINT_TYPE}")
    salt = obj.get("salt")
    if not isinstance(salt, str) or not _HEX64.fullmatch(salt):
        raise bad("salt must be 64 lower-case hex digits")
    components = obj.get("components")
    if not isinstance(components, list) or not components:
        raise bad("components must be a non-empty list")
    for i, comp in enumerate(components):
        if not isinstance(comp, dict) or set(comp) != {"kind", "hash"}:
            raise bad(f"components[{i}] must be exactly {{kind, hash}}")
        if not isinstance(comp["kind"], str) or not comp["kind"]:
            raise bad(f"components[{i}].kind must be a non-empty string")
        if not isinstance(comp["hash"], str) or not _HEX64.fullmatch(comp["hash"]):
            raise bad(f"components[{i}].hash must be 64 lower-case hex digits")
    return obj


# --------------------------------------------------------------------------- glue


@dataclass
class LicenseCheck:
    """A verdict plus what the host-side glue noticed (state warnings)."""

    verdict: Verdict
    state_path: Path | None


def verify_license(
    license_data: bytes, root: TrustRoot, *, now: dt.datetime | None = None,
    state_path: Path | None = None, crls: Sequence[tuple[str, bytes, bool]] = (),
    bundle: BundleFacts | None = None, host: Mapping[str, Sequence[str]] | None = None,
    environment: str | None = None, what: str = "license",
) -> LicenseCheck:
    """Lock the state, load it, judge, and write what was learnt (docs/LICENSE-FORMAT.md
    section 10), all before returning or raising.

    After a verdict the whole new state is merged in. After a rejection what it observed
    is: ``last_seen`` (the host clock) and a newer CRL read on the way (re-issue numbers
    stay as they were), so that neither an observed expiry nor a revocation is forgotten
    because the license was refused. A failure to write is E_WRITE after a verdict, and
    never hides a rejection.
    """
    moment = utc_now() if now is None else utc_moment(now, "now")
    facts = collect_host() if host is None else host
    env = environment if environment is not None else os.environ.get("OEMKIT_ENV")

    def judge(state: LicenseState) -> Verdict:
        return evaluate(license_data, root, moment, state=state, crls=crls, bundle=bundle,
                        host=facts, environment=env, what=what)

    if state_path is None:
        return LicenseCheck(judge(LicenseState()), None)
    with state_lock(state_path):
        whole, notes = _read_state(state_path)
        try:
            verdict = judge(whole.view(root))
        except OemkitError as exc:
            update = pending_state(exc)
            if update is not None:
                # The rejection is the answer; failing to remember must not hide it.
                with contextlib.suppress(OemkitError):
                    _save(state_path, update, root)
            raise
        verdict.warnings[:0] = notes
        if verdict.new_state is not None:
            _save(state_path, verdict.new_state, root)
    return LicenseCheck(verdict, state_path)


def bundle_facts(report: Any) -> BundleFacts:
    """Binding facts of a verified bundle (from its authenticated manifest)."""
    manifest = report.manifest
    return BundleFacts(manifest_sha256=report.manifest_sha256, name=manifest.name,
                       build_time=parse_time(manifest.build_time, "build_time"),
                       channel=manifest.channel)


def bind_bundle(bundle: Path | str | bytes, root: TrustRoot) -> tuple[
        TrustRoot, BundleFacts, list[tuple[str, bytes, bool]]]:
    """What a license is judged against when it must cover ``bundle`` (``oemkit license
    verify --bundle``, ``oemkit.license.verify(bundle=...)``): the bundle (a file or its
    bytes) verified against the pinned ``root``, then the newest root its carried roots
    chain to, its binding facts and its carried CRL (not an explicit one).

    Raises:
        VerificationError: the bundle's own verification failure (its report's error,
            which is an InputError where verify records one).
        InputError: E_NOT_FOUND, E_NOT_A_FILE (the bundle file).
        EnvironmentProblem: E_PERMISSION.
    """
    import io

    from oemkit._fs import open_input
    from oemkit.verify.bundle import verify_open_bundle

    if isinstance(bundle, bytes):
        label, report = "bundle", verify_open_bundle(io.BytesIO(bundle), root)
    else:
        with open_input(Path(bundle), "bundle") as handle:
            report = verify_open_bundle(handle, root, name=str(bundle))
        label = Path(bundle).name
    if not report.ok:
        assert report.error is not None
        raise report.error
    crls = [(f"{label}:revocations.crl", report.crl, False)] if report.crl else []
    assert report.root is not None
    return report.root, bundle_facts(report), crls


def judge_attached(report: Any, *, state_path: Path | None, environment: str | None = None,
                   host: Mapping[str, Sequence[str]] | None = None,
                   now: dt.datetime | None = None) -> None:
    """Judge the licenses a verified bundle carries; record the outcome on the report."""
    from oemkit.errors import VerificationError

    if not report.ok or not report.licenses:
        return
    crls = [("revocations.crl", report.crl, False)] if report.crl else []
    results = []
    for name, data in report.licenses:
        try:
            check = verify_license(data, report.root, now=now, state_path=state_path,
                                   crls=crls, bundle=bundle_facts(report), host=host,
                                   environment=environment, what=name)
        except (VerificationError, InputError) as exc:  # e.g. E_TOO_LARGE: still a "no"
            if isinstance(exc, InputError):
                exc = restate(exc, VerificationError, member=name)
            report.failed(exc, name="license")
            results.append({"member": name, "verdict": "rejected", "error": exc.to_dict()})
            continue
        verdict = check.verdict
        results.append({"member": name, **verdict.to_dict()})
        detail = (f"{verdict.claims.license_id} for {verdict.claims.customer_name}: "
                  f"{verdict.status} until {verdict.claims.expires:%Y-%m-%d}")
        if verdict.status == "grace":
            report.warned("license", detail + f" (grace, {verdict.grace_days_left} days left)")
        else:
            report.passed("license", detail)
    report.license = results
