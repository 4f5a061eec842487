"""License verification on a host: the state file, the host's hardware facts, and the glue
that feeds them (and an optional bundle's CRL and binding facts) to the pure verifier.

The state file is JSON, written atomically with mode 0600 and only after a verdict. A
missing or corrupt state is reported and verification falls back to the newest signed
issue time: never to "anything goes".
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from oemkit._fs import atomic_write_bytes, read_input
from oemkit._time import format_time, parse_time
from oemkit._time import now as utc_now
from oemkit.errors import InputError, OemkitError
from oemkit.models.license import FINGERPRINT_TYPE
from oemkit.models.trust import TrustRoot
from oemkit.verify.license import (
    BundleFacts,
    LicenseState,
    Verdict,
    component_hash,
    evaluate,
    pending_state,
)

STATE_TYPE = "oemkit-license-state/v2"
_STATE_V1 = "oemkit-license-state/v1"


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


def _root_keys(root: TrustRoot | None) -> set[str]:
    return {k.keyid for k in root.keys if "root" in k.usage} if root is not None else set()


def _parse_state(data: bytes) -> _StateFile:
    obj = json.loads(data)
    if not isinstance(obj, dict) or obj.get("type") not in (STATE_TYPE, _STATE_V1):
        raise ValueError("not an oemkit license state")
    raw_issuers = obj.get("issuers", []) if obj["type"] == STATE_TYPE else [
        {"root_keys": [], "crl": obj.get("crl"), "crl_seq": obj.get("crl_seq", 0),
         "seqs": obj.get("seqs", {})}]
    if not isinstance(raw_issuers, list):
        raise ValueError("issuers is malformed")
    issuers = []
    for raw in raw_issuers:
        seqs = raw.get("seqs", {}) if isinstance(raw, dict) else None
        if not isinstance(seqs, dict) or any(not isinstance(v, int) for v in seqs.values()):
            raise ValueError("seqs is malformed")
        keys = raw.get("root_keys", [])
        if not isinstance(keys, list) or any(not isinstance(k, str) for k in keys):
            raise ValueError("root_keys is malformed")
        crl = raw.get("crl")
        issuers.append(_Issuer(set(keys), crl.encode("ascii") if isinstance(crl, str) else None,
                               int(raw.get("crl_seq", 0)), dict(seqs)))
    last_seen = obj.get("last_seen")
    return _StateFile(parse_time(last_seen, "last_seen") if last_seen else None, issuers)


def _read_state(path: Path) -> tuple[_StateFile, str | None]:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return _StateFile(), (f"no license state at {path} yet: judging at the newest signed "
                              "issue time; the state will be created")
    except OSError as exc:
        return _StateFile(), (f"cannot read license state {path} ({exc.strerror}): judging "
                              "at the newest signed issue time")
    try:
        return _parse_state(data), None
    except (ValueError, KeyError, TypeError, AttributeError, InputError) as exc:
        aside = path.with_name(path.name + ".corrupt")
        try:
            os.replace(path, aside)
            kept = f"; kept as {aside}"
        except OSError:
            kept = ""
        return _StateFile(), (f"license state {path} is corrupt ({exc}){kept}: judging at "
                              "the newest signed issue time")


def load_state(path: Path, root: TrustRoot | None = None) -> tuple[LicenseState, str | None]:
    """The remembered state for licenses under ``root`` (its vendor's CRL and re-issue
    numbers; the host's clock reading is shared) and, when it could not be used, why."""
    whole, problem = _read_state(path)
    issuer = whole.issuer(root)
    return LicenseState(last_seen=whole.last_seen, crl=issuer.crl, crl_seq=issuer.crl_seq,
                        seqs=dict(issuer.seqs)), problem


def save_state(path: Path, state: LicenseState, root: TrustRoot | None = None) -> None:
    """Write ``state`` as ``root``'s vendor's part of the file, keeping the other vendors'."""
    try:
        whole = _parse_state(path.read_bytes())
    except (OSError, ValueError, KeyError, TypeError, AttributeError, InputError):
        whole = _StateFile()  # missing or corrupt (load_state has set a corrupt one aside)
    issuer = whole.issuer(root, add=True)
    issuer.root_keys |= _root_keys(root)
    issuer.crl, issuer.crl_seq, issuer.seqs = state.crl, state.crl_seq, dict(state.seqs)
    whole.last_seen = state.last_seen
    doc = {"type": STATE_TYPE,
           "last_seen": format_time(whole.last_seen) if whole.last_seen else None,
           "issuers": [{"root_keys": sorted(i.root_keys),
                        "crl": i.crl.decode("ascii") if i.crl else None,
                        "crl_seq": i.crl_seq, "seqs": dict(sorted(i.seqs.items()))}
                       for i in whole.issuers]}
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    atomic_write_bytes(path, (json.dumps(doc, indent=2) + "\n").encode(), mode=0o600)


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
    """Load state, judge, and write the new state.

    After a verdict the whole new state is written. After a rejection only a newer CRL
    read on the way is remembered (``last_seen`` and re-issue numbers stay as they were),
    so that a revocation is never forgotten because the license it revoked was refused.
    """
    state, problem = (load_state(state_path, root) if state_path is not None
                      else (LicenseState(), None))
    try:
        verdict = evaluate(
            license_data, root, now or utc_now(), state=state, crls=crls, bundle=bundle,
            host=collect_host() if host is None else host,
            environment=environment if environment is not None else os.environ.get(
                "OEMKIT_ENV"),
            what=what)
    except OemkitError as exc:
        update = pending_state(exc)
        if state_path is not None and update is not None:
            # The rejection is the answer; failing to remember the CRL must not hide it.
            with contextlib.suppress(OSError, OemkitError):
                save_state(state_path, update, root)
        raise
    if problem:
        verdict.warnings.insert(0, problem)
    if state_path is not None and verdict.new_state is not None:
        save_state(state_path, verdict.new_state, root)
    return LicenseCheck(verdict, state_path)


def bundle_facts(report: Any) -> BundleFacts:
    """Binding facts of a verified bundle (from its authenticated manifest)."""
    manifest = report.manifest
    return BundleFacts(manifest_sha256=report.manifest_sha256, name=manifest.name,
                       build_time=parse_time(manifest.build_time, "build_time"),
                       channel=manifest.channel)


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
                exc = VerificationError(exc.code, exc.message, hint=exc.hint, check=exc.check,
                                        member=name)
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
