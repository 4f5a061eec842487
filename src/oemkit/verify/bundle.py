"""Offline verification of a bundle: structure, trust, signatures, manifest, SBOM, payload.

Order matters (DESIGN.md principle 3): the small members are read, the signatures are
verified over the exact provenance bytes, the provenance binds the manifest's digest, and
only then is the manifest parsed and the payload streamed and hashed file by file.
The function takes an open file and a pinned trust root; it never touches the clock,
the network or any path other than through the optional ``sink``.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, BinaryIO

from oemkit._canonical import canonical_json, parse_json, sha256_hex
from oemkit._fs import (
    OuterMember,
    read_member,
    scan_outer,
)
from oemkit._time import parse_time
from oemkit.crypto.dsse import INTOTO_PAYLOAD_TYPE, parse_sigstore_bundle
from oemkit.crypto.keys import load_public
from oemkit.errors import FormatError, InputError, VerificationError, restate
from oemkit.models.manifest import (
    LICENSE_DIR,
    LINK_DIR,
    MANIFEST,
    PAYLOAD,
    PROVENANCE,
    REVOCATIONS,
    SBOM,
    SIGNATURE_DIR,
    TRUST_DIR,
    Manifest,
)
from oemkit.models.report import VerifyReport
from oemkit.models.trust import MAX_ROOT_BYTES, TrustKey, TrustRoot
from oemkit.verify.payload import ProgressFn as ProgressFn  # host.unpack's import
from oemkit.verify.payload import Sink as Sink
from oemkit.verify.payload import _fail, stream_payload
from oemkit.verify.sbom import check_sbom
from oemkit.verify.trust import load_pinned, walk_chain

#: The payload stream parser (inner tar in zstd) is verify.payload; host.migrate calls it
#: by its former name here.
_stream_payload = stream_payload
#: The hint of a member that does not parse (verify.payload's ``_fail`` default).
_ALTERED = "the bundle was altered after signing; obtain a fresh copy from the vendor"


#: The provenance (and so each signature, which embeds it in base64) grows with the payload's
#: file count (about 130 bytes a file), but it is read and its signatures checked before
#: anything is trusted: its limit is ``max_metadata_bytes // SIGNED_RATIO`` (4 MiB, about
#: 30,000 files, by default), raised with the same ``--max-member-size`` flag.
SIGNED_RATIO = 16
#: A signature member: the base64 of the provenance plus this much for the rest (at most
#: 64 signatures of under 200 bytes each, the media type and the key hint).
SIGNATURE_OVERHEAD = 64 << 10
#: ``licenses/*`` and ``revocations.crl`` are armored documents, which are never larger.
ARMORED_LIMIT = 64 << 10
#: Signature members are parsed before anything is trusted: one holding more JSON values
#: than this (commas and colons) is refused before the parser sees it.
MAX_SIGNATURE_VALUES = 1 << 16
#: Signature checks (one signature under one key, over the whole provenance) a bundle may
#: cost in all: this many, and no more than hash 32 provenances at their limit (so 32 for
#: a provenance at its limit, as many as signature members). Each signature is tried
#: first under the key its member name gives, so a bundle oemkit signed needs one check
#: per signature.
MAX_SIGNATURE_CHECKS = 256


def _signature_size(provenance_limit: int) -> int:
    return -(-provenance_limit // 3) * 4 + SIGNATURE_OVERHEAD


@dataclass(frozen=True)
class Limits:
    """Reader limits; each breach is a coded error. Raise them for legitimate giants.

    Members read before any signature is trusted have their own, smaller limits, derived
    from ``max_metadata_bytes`` (so one flag raises them together): the provenance
    (``max_provenance_bytes``), each signature member (``max_signature_bytes``), and the
    armored ``licenses/*`` and ``revocations.crl`` (64 KiB, at most ``max_licenses``).
    """

    max_members: int = 512
    max_signatures: int = 32
    max_metadata_bytes: int = 64 << 20
    max_metadata_total: int = 256 << 20
    max_files: int = 1_000_000
    max_payload_bytes: int = 1 << 40
    max_licenses: int = 64

    @property
    def max_provenance_bytes(self) -> int:
        """Largest provenance read before trust: the member limit over SIGNED_RATIO (each
        signature member embeds the provenance, so its cost is bounded by this)."""
        return self.max_metadata_bytes // SIGNED_RATIO

    def max_signature_checks(self, provenance_size: int) -> int:
        """Signature checks a bundle with a provenance of this size may cost."""
        return min(MAX_SIGNATURE_CHECKS,
                   self.max_signatures * self.max_provenance_bytes
                   // max(1, provenance_size))

    @property
    def max_signature_bytes(self) -> int:
        """Largest signature member: a Sigstore bundle around a provenance at its limit."""
        return min(self.max_metadata_bytes, _signature_size(self.max_provenance_bytes))

    def member_limit(self, name: str) -> int:
        """The most bytes member ``name`` may declare."""
        if name == PAYLOAD:
            return self.max_payload_bytes
        if name == PROVENANCE:
            return self.max_provenance_bytes
        if name.startswith(SIGNATURE_DIR):
            return self.max_signature_bytes
        if name == REVOCATIONS or name.startswith(LICENSE_DIR):
            return min(self.max_metadata_bytes, ARMORED_LIMIT)
        if name.startswith(TRUST_DIR):
            return min(self.max_metadata_bytes, MAX_ROOT_BYTES)
        return self.max_metadata_bytes


#: The limits a verifier applies when given no flags (``flags_needed`` compares with them).
DEFAULT_LIMITS = Limits()


def _metadata_needed(name: str, size: int) -> int:
    """The smallest ``max_metadata_bytes`` under which member ``name`` of ``size`` fits."""
    if name == PROVENANCE:
        return size * SIGNED_RATIO
    if name.startswith(SIGNATURE_DIR):
        provenance = max(0, size - SIGNATURE_OVERHEAD) * 3 // 4 + 3
        return max(size, provenance * SIGNED_RATIO)
    return size


def flags_needed(member_sizes: dict[str, int], files: int,
                 limits: Limits | None = None) -> list[str]:
    """The reader-limit flags a verifier with default limits needs for a bundle with these
    outer member sizes (the payload's compressed) and this many files; empty when none.

    ``oemkit build`` prints them, so that a legitimately giant bundle does not first meet
    its limits on a disconnected host. Armored members (licenses, the CRL) have a fixed
    limit no flag raises.

    Raises:
        Nothing coded: it only compares sizes.
    """
    limits = limits or DEFAULT_LIMITS
    metadata = {n: s for n, s in member_sizes.items() if n != PAYLOAD}
    flags = []
    need = max((_metadata_needed(n, s) for n, s in metadata.items()
                if s > limits.member_limit(n)), default=0)
    total = sum(metadata.values())
    if need or total > limits.max_metadata_total:
        # the CLI sets the total to 4x the member limit
        need = max(need, max(metadata.values(), default=0), -(-total // 4))
        flags.append(f"--max-member-size {_round_up(need)}")
    if files > limits.max_files:
        flags.append(f"--max-files {files}")
    if member_sizes.get(PAYLOAD, 0) > limits.max_payload_bytes:
        flags.append(f"--max-payload-bytes {_round_up(member_sizes[PAYLOAD])}")
    return flags


def _round_up(n: int) -> int:
    """``n`` rounded up to a whole MiB, so the printed flag is easy to read and reuse."""
    return -(-n // (1 << 20)) << 20


def scan_bundle(handle: BinaryIO, limits: Limits) -> list[OuterMember]:
    """Scan the outer archive and check member order and the metadata budgets.

    Raises:
        VerificationError: from the outer tar, ``E_NOT_A_BUNDLE``, ``E_TAR_HEADER``,
            ``E_TAR_CHECKSUM``, ``E_TAR_PADDING``, ``E_TAR_END``, ``E_TAR_TRAILING``,
            ``E_TRUNCATED``, ``E_MEMBER_NAME``, ``E_MEMBER_TYPE``, ``E_MEMBER_SIZE`` (a
            member over its limit, or the metadata over ``max_metadata_total``),
            ``E_TOO_MANY_MEMBERS``; from the order, ``E_MEMBER_DUPLICATE``,
            ``E_MEMBER_UNKNOWN``, ``E_MEMBER_MISSING`` (a required member),
            ``E_MEMBER_ORDER``; ``E_TOO_MANY_SIGNATURES``, ``E_TOO_MANY_LICENSES`` (over
            ``limits``).
    """
    members = scan_outer(handle, max_members=limits.max_members,
                         max_member_size=limits.member_limit)
    _check_order(members)
    signatures = [m for m in members if m.name.startswith(SIGNATURE_DIR)]
    if len(signatures) > limits.max_signatures:
        raise _fail("E_TOO_MANY_SIGNATURES", f"the bundle carries {len(signatures)} signature "
                    f"members (limit {limits.max_signatures})", check="archive structure",
                    hint="the bundle is hostile or damaged; obtain a fresh copy")
    links = sum(1 for m in members if m.name.startswith(LINK_DIR))
    if links > limits.max_signatures:  # one in-toto link per signing key (docs/INTOTO.md)
        raise _fail("E_TOO_MANY_SIGNATURES", f"the bundle carries {links} in-toto link "
                    f"members (limit {limits.max_signatures})", check="archive structure",
                    hint="the bundle is hostile or damaged; obtain a fresh copy")
    licenses = sum(1 for m in members if m.name.startswith(LICENSE_DIR))
    if licenses > limits.max_licenses:
        raise _fail("E_TOO_MANY_LICENSES", f"the bundle carries {licenses} license members "
                    f"(limit {limits.max_licenses})", check="archive structure",
                    hint="the bundle is hostile or damaged; obtain a fresh copy")
    metadata = sum(m.size for m in members if m.name != PAYLOAD)
    if metadata > limits.max_metadata_total:
        raise _fail("E_MEMBER_SIZE", f"the bundle's metadata members total {metadata} bytes "
                    f"(limit {limits.max_metadata_total})", check="archive structure",
                    hint="if this bundle is legitimate, raise the limit with --max-member-size")
    return members


def _check_order(members: list[OuterMember]) -> None:
    """Fixed order: manifest, SBOM, provenance, trust roots, payload, in-toto links,
    signatures, licenses."""
    names = [m.name for m in members]
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise _fail("E_MEMBER_DUPLICATE", f"member {name} appears twice",
                        check="archive structure", member=name)
        seen.add(name)

    def rank(name: str) -> int:
        fixed = {MANIFEST: 0, SBOM: 1, PROVENANCE: 2, REVOCATIONS: 4, PAYLOAD: 5}
        if name in fixed:
            return fixed[name]
        for prefix, value in ((TRUST_DIR, 3), (LINK_DIR, 6), (SIGNATURE_DIR, 7),
                              (LICENSE_DIR, 8)):
            if name.startswith(prefix):
                return value
        raise _fail("E_MEMBER_UNKNOWN", f"unexpected member {name}", check="archive structure",
                    member=name)

    for required in (MANIFEST, SBOM, PROVENANCE, PAYLOAD):
        if required not in seen:
            raise _fail("E_MEMBER_MISSING", f"required member {required} is missing",
                        check="archive structure", member=required)
    ranks = [rank(n) for n in names]
    for i in range(1, len(names)):
        if ranks[i] < ranks[i - 1]:
            raise _fail("E_MEMBER_ORDER", f"member {names[i]} is out of order (after "
                        f"{names[i - 1]})", check="archive structure", member=names[i],
                        expected="manifest, sbom, provenance, trust/*, revocations.crl, "
                                 "payload, links/*, signatures/*, licenses/*")


def _judge_signatures(
    report: VerifyReport, root: TrustRoot, provenance: bytes,
    sig_members: Iterable[tuple[str, bytes]], revoked: frozenset[str] = frozenset(),
    max_checks: int = MAX_SIGNATURE_CHECKS,
) -> tuple[list[TrustKey], dict[str, Any]]:
    """Verify every signature over the provenance bytes and apply the bundle policy.

    Nothing is parsed from the provenance until a key of ``root`` verified a signature
    over its exact bytes; signature members come one at a time (``sig_members``) and are
    dropped after use. ``revoked``: key ids the carried, verified CRL revokes.
    """
    from oemkit.crypto.dsse import verify_signature

    all_keys = [(k, load_public(k.public_key, k.keyid)) for k in root.keys]
    verified: dict[str, TrustKey] = {}
    checks = 0
    seen_any = False
    for name, data in sig_members:
        seen_any = True
        values = data.count(b",") + data.count(b":")
        if values > MAX_SIGNATURE_VALUES:
            raise _fail("E_ENVELOPE", f"{name} holds {values} JSON values; a signature "
                        f"member holds at most {MAX_SIGNATURE_VALUES}", check="signatures",
                        member=name, hint="the signature file is hostile or damaged")
        try:
            env = parse_sigstore_bundle(data, name)
        except InputError as exc:
            raise restate(exc, VerificationError, check="signatures", member=name,
                          hint=_ALTERED) from exc
        del data
        if env.payload_type != INTOTO_PAYLOAD_TYPE:
            raise _fail("E_SIGNATURE_PAYLOAD", f"{name} signs payload type {env.payload_type!r}",
                        check="signatures", member=name, expected=INTOTO_PAYLOAD_TYPE,
                        actual=env.payload_type)
        if env.payload != provenance:
            raise _fail("E_SIGNATURE_PAYLOAD", f"{name} signs a different statement than "
                        f"{PROVENANCE}", check="signatures", member=name,
                        expected=sha256_hex(provenance), actual=sha256_hex(env.payload))
        named = name[len(SIGNATURE_DIR):].split(".", 1)[0]
        candidates = sorted(all_keys, key=lambda kp: kp[0].keyid != named)
        for sig in env.signatures:
            for key, public in candidates:
                if key.keyid in verified or not _plausible(public, sig):
                    continue
                checks += 1
                if checks > max_checks:
                    raise _fail("E_TOO_MANY_SIGNATURES", f"the bundle's signatures need more "
                                f"than {max_checks} signature checks", check="signatures",
                                member=name, hint="the bundle is hostile or damaged; a bundle "
                                "signed by oemkit needs one check per signature")
                if verify_signature(public, env.payload_type, env.payload, sig):
                    verified[key.keyid] = key
                    break
        del env
    if not seen_any:
        raise _fail("E_UNSIGNED", "the bundle carries no signature", check="signatures",
                    hint="sign it with 'oemkit sign BUNDLE --key KEY'")
    if not verified:
        raise _untrusted(root)
    statement = _statement(provenance)
    signed_at = parse_time(statement["predicate"]["runDetails"]["metadata"]["finishedOn"],
                           "provenance finishedOn")
    compromised = [k for k in verified.values() if k.status == "compromised"]
    if compromised:
        k = compromised[0]
        raise _fail("E_KEY_COMPROMISED", f"signed by key {k.keyid[:16]}… ({k.name}), which the "
                    f"trust root v{root.version} marks compromised", check="signatures",
                    member=f"{SIGNATURE_DIR}{k.keyid}.sigstore.json",
                    hint="a compromised key invalidates everything it signed; ask the vendor "
                         "for a bundle signed with a current key")
    listed = [k for k in verified.values() if k.keyid in revoked]
    if listed:
        k = listed[0]
        raise _fail("E_KEY_REVOKED", f"signed by key {k.keyid[:16]}… ({k.name}), which the "
                    f"carried {REVOCATIONS} revokes", check="signatures",
                    member=f"{SIGNATURE_DIR}{k.keyid}.sigstore.json", actual=k.keyid,
                    hint="a revoked key invalidates everything it signed; ask the vendor for a "
                         "bundle signed with a current key")
    good = [k for k in verified.values() if "bundle" in k.usage and k.valid_at(signed_at)]
    need = root.thresholds["bundle"]
    if len(good) >= need:
        report.passed("signatures", f"{len(good)} valid bundle signature(s) "
                      f"(threshold {need}): " + ", ".join(f"{k.name} {k.keyid[:16]}…"
                                                          for k in good))
        return good, statement
    wrong_usage = [k for k in verified.values() if "bundle" not in k.usage]
    out_of_window = [k for k in verified.values()
                     if "bundle" in k.usage and not k.valid_at(signed_at)]
    if out_of_window:
        k = out_of_window[0]
        end = k.window_end()
        raise _fail("E_KEY_WINDOW", f"key {k.keyid[:16]}… ({k.name}) signed at "
                    f"{signed_at:%Y-%m-%dT%H:%M:%SZ}, outside its validity window",
                    check="signatures",
                    expected=f"{_when(k.not_before, '-∞')} .. {_when(end, '∞')}",
                    actual=f"{signed_at:%Y-%m-%dT%H:%M:%SZ}",
                    hint="the key had expired or been retired when this bundle was signed")
    if wrong_usage and not good:
        k = wrong_usage[0]
        raise _fail("E_KEY_USAGE", f"signed by key {k.keyid[:16]}… ({k.name}), which is trusted "
                    f"for {', '.join(k.usage)}, not bundle signing", check="signatures",
                    expected="usage bundle", actual=", ".join(k.usage),
                    hint="sign bundles with a key added with --usage bundle")
    raise _fail("E_SIGNATURE_THRESHOLD", f"{len(good)} valid bundle signature(s), the trust "
                f"root requires {need}", check="signatures", expected=f">= {need}",
                actual=str(len(good)), hint="sign the bundle with more trusted bundle keys")


def judge_provenance(root: TrustRoot, provenance: bytes,
                     signatures: Iterable[tuple[str, bytes]]) -> tuple[list[str], dict[str, str]]:
    """The bundle policy of ``verify`` over a provenance and its signature members, on their
    own (an evidence pack re-checks a bundle it no longer has): the key ids that count and
    the statement's subject digests (member name -> SHA-256).

    Raises:
        VerificationError: the signature codes of ``verify`` (``E_UNSIGNED``,
            ``E_SIGNATURE_THRESHOLD``, ``E_KEY_REVOKED``, ``E_KEY_USAGE``, ...).
    """
    good, statement = _judge_signatures(VerifyReport(bundle="provenance"), root, provenance,
                                        signatures)
    return [k.keyid for k in good], _subject_digests(statement)


def _untrusted(root: TrustRoot) -> VerificationError:
    return _fail("E_SIGNATURE_UNTRUSTED", f"no signature verifies under any key of trust "
                 f"root v{root.version}", check="signatures",
                 hint="the bundle was signed by an unknown key or altered after signing; "
                      "check --trust or obtain a fresh copy")


def _plausible(public: Any, sig: bytes) -> bool:
    """Whether ``sig`` has the shape of a signature by ``public`` (Ed25519: 64 bytes;
    ECDSA P-256: a DER sequence of at most 72 bytes); others are not worth a check."""
    from cryptography.hazmat.primitives.asymmetric import ed25519

    if isinstance(public, ed25519.Ed25519PublicKey):
        return len(sig) == 64
    return 8 <= len(sig) <= 72 and sig[:1] == b"\x30"


def _not_provenance() -> VerificationError:
    return _fail("E_PROVENANCE_INVALID", f"{PROVENANCE} is not an in-toto Statement v1 with a "
                 "SLSA Provenance v1 predicate", check="provenance", member=PROVENANCE)


def _when(moment: Any, default: str) -> str:
    return default if moment is None else f"{moment:%Y-%m-%dT%H:%M:%SZ}"


def _statement(provenance: bytes) -> dict[str, Any]:
    try:
        obj = parse_json(provenance, what=PROVENANCE)
        ok = (isinstance(obj, dict) and obj.get("_type") == "https://in-toto.io/Statement/v1"
              and obj.get("predicateType") == "https://slsa.dev/provenance/v1"
              and isinstance(obj.get("subject"), list)
              and isinstance(obj["predicate"]["runDetails"]["metadata"]["finishedOn"], str))
    except (InputError, KeyError, TypeError) as exc:
        raise _not_provenance() from exc
    if not ok:
        raise _not_provenance()
    return obj  # type: ignore[no-any-return]


def parse_manifest(data: bytes) -> Manifest:
    """The manifest from its exact bytes: strict JSON, canonical (the bytes must be
    ``canonical_json`` of their parse: one document, one encoding), then the schema.

    Raises:
        VerificationError: ``E_MANIFEST_INVALID`` (member ``manifest.json``; check
            ``manifest``, or ``manifest schema`` with the field) for each: not strict JSON,
            no canonical form, bytes not the canonical form, the schema; a parse error or
            the models' FormatError is restated, never InputError.
    """
    try:
        obj = parse_json(data, what=MANIFEST)
        canonical = canonical_json(obj)
    except InputError as exc:
        raise _fail("E_MANIFEST_INVALID", exc.message, check="manifest", member=MANIFEST,
                    hint="the bundle was not written by oemkit") from exc
    if canonical != data:
        at = next((i for i, (a, b) in enumerate(zip(canonical, data, strict=False))
                   if a != b),
                  min(len(canonical), len(data)))
        raise _fail("E_MANIFEST_INVALID", f"{MANIFEST} is not canonical JSON (RFC 8785): its "
                    f"bytes differ from the canonical form at byte {at}", check="manifest",
                    member=MANIFEST, hint="the bundle was not written by oemkit; rebuild it")
    try:
        return Manifest.from_dict(obj)
    except FormatError as exc:  # a bundle's manifest is evidence: its schema failing is a "no"
        raise restate(exc, VerificationError) from exc


def _subject_digests(statement: dict[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    for subject in statement["subject"]:
        if isinstance(subject, dict) and isinstance(subject.get("digest"), dict):
            out[str(subject.get("name"))] = str(subject["digest"].get("sha256"))
    return out


def verify_open_bundle(
    handle: BinaryIO, pinned: bytes | TrustRoot, *, name: str = "bundle",
    limits: Limits | None = None, progress: ProgressFn | None = None, sink: Sink | None = None,
) -> VerifyReport:
    """Verify an open bundle against a pinned trust root (its document bytes or parsed).

    Never raises for a bad bundle: the report holds every passed check and the failure
    (a VerificationError's code, exit 1, also for a member that does not parse). Bytes
    are loaded by :func:`oemkit.verify.trust.load_pinned`; a parsed root is used as is.

    Raises:
        InputError: a malformed pinned trust root (exit 3): the codes of
            :func:`oemkit.verify.trust.parse_root` (``E_TRUST_INVALID``, ``E_TOO_LARGE``,
            ``E_TOO_MANY_SIGNATURES``, ``E_ENVELOPE``, ``E_BASE64``,
            ``E_TRUST_TOO_MANY_KEYS``, ``E_TRUST_WEAK_KEY``, ``E_KEY_FORMAT``,
            ``E_KEY_ALGORITHM``) and ``E_TRUST_THRESHOLD`` (not properly self-signed).
        OSError: reading ``handle`` fails; writing to ``sink`` fails (unpack).
    """
    limits = limits or Limits()
    report = VerifyReport(bundle=name)
    pinned_root = load_pinned(pinned)
    try:
        _verify(handle, pinned_root, report, limits, progress, sink)
    except VerificationError as exc:
        report.failed(exc)
    except InputError as exc:  # a malformed member is the bundle's fault: the answer is "no"
        report.failed(restate(exc, VerificationError))
    return report


def _verify(handle: BinaryIO, pinned: TrustRoot, report: VerifyReport, limits: Limits,
            progress: ProgressFn | None, sink: Sink | None) -> None:
    members = scan_bundle(handle, limits)
    by_name = {m.name: m for m in members}
    report.passed("archive structure", f"{len(members)} members in canonical order, "
                  "no trailing data")

    # Carried roots are read only when the walk reaches them (one at a time, each at most
    # a trust root's 1 MiB): versions at or below the pin, and those after a failure, never.
    carried = [(m.name, functools.partial(read_member, handle, m)) for m in members
               if m.name.startswith(TRUST_DIR)]
    root, walked = walk_chain(pinned, carried)
    report.trust_root_version = root.version
    chain = f" (advanced to v{root.version} via carried roots)" if walked else ""
    report.passed("trust root", f"pinned v{pinned.version}{chain}, "
                  f"{len(root.keys_for('bundle'))} bundle key(s)")

    # The carried CRL (a small armored document, signed by a crl key of the effective
    # root) is judged before the signatures, so that a key it revokes counts for nothing;
    # a CRL that fails its own checks is reported where it always was, after the manifest.
    revoked: frozenset[str] = frozenset()
    crl_error: Exception | None = None
    crl: Any = None
    if REVOCATIONS in by_name:
        from oemkit.verify.license import read_crl

        report.crl = read_member(handle, by_name[REVOCATIONS])
        try:
            crl = read_crl(report.crl, root, REVOCATIONS)
            revoked = frozenset(crl.keys)
        except (VerificationError, InputError) as exc:
            crl_error = exc

    provenance = read_member(handle, by_name[PROVENANCE])
    signatures = ((m.name, read_member(handle, m)) for m in members
                  if m.name.startswith(SIGNATURE_DIR))
    good, statement = _judge_signatures(
        report, root, provenance, signatures, revoked,
        limits.max_signature_checks(len(provenance)))
    report.signers = [k.keyid for k in good]
    report.provenance_sha256 = sha256_hex(provenance)
    links = [m for m in members if m.name.startswith(LINK_DIR)]
    if links:  # in-toto links (docs/INTOTO.md): authentic, in form, by this bundle's signers
        from oemkit.verify.layout import judge_links

        judge_links(((m.name, read_member(handle, m)) for m in links),
                    [(k.keyid, load_public(k.public_key, k.keyid)) for k in good])

    subjects = _subject_digests(statement)
    del provenance, signatures, statement  # memory: at 100,000 files, tens of MB each
    manifest_bytes = read_member(handle, by_name[MANIFEST])
    manifest_digest = sha256_hex(manifest_bytes)
    if subjects.get(MANIFEST) != manifest_digest:
        raise _fail("E_MANIFEST_DIGEST", f"{MANIFEST} does not match the digest in the signed "
                    "provenance", check="provenance", member=MANIFEST,
                    expected=subjects.get(MANIFEST), actual=manifest_digest)
    report.manifest_sha256 = manifest_digest
    report.passed("provenance", "signed in-toto statement binds the manifest "
                  f"(sha256 {manifest_digest[:16]}…)")

    manifest = parse_manifest(manifest_bytes)
    del manifest_bytes
    report.name, report.version = manifest.name, manifest.version
    if subjects.get(PAYLOAD) != manifest.members[PAYLOAD].sha256:
        raise _fail("E_PROVENANCE_SUBJECT", "the provenance and the manifest disagree on the "
                    "payload digest", check="provenance", member=PROVENANCE,
                    expected=manifest.members[PAYLOAD].sha256, actual=subjects.get(PAYLOAD))
    listed = _listed_members(by_name, manifest)
    sbom: bytes | None = None
    for member_name in listed:
        if member_name == PAYLOAD:
            continue
        data = read_member(handle, by_name[member_name])
        if member_name == SBOM:
            sbom = data  # checked below; read once
        if sha256_hex(data) != manifest.members[member_name].sha256:
            raise _fail("E_MEMBER_DIGEST", f"{member_name} does not match its manifest digest",
                        check="manifest", member=member_name,
                        expected=manifest.members[member_name].sha256, actual=sha256_hex(data))
    report.passed("manifest", f"{manifest.name} {manifest.version}: {len(manifest.files)} "
                  f"files, {len(listed) - 1} listed members match their digests")
    report.manifest, report.root = manifest, root
    report.licenses = [(m.name, read_member(handle, m)) for m in members
                       if m.name.startswith(LICENSE_DIR)]
    if crl_error is not None:
        raise crl_error
    if crl is not None:
        report.passed("revocations", f"carried CRL sequence {crl.seq} is signed by a trusted "
                      f"crl key ({len(crl.licenses)} license(s), {len(crl.keys)} key(s) "
                      "revoked)")

    data = b""  # drop the last member read before the SBOM is parsed (memory)
    check_sbom(sbom if sbom is not None else read_member(handle, by_name[SBOM]), manifest)
    sbom = None
    report.passed("sbom", f"valid CycloneDX 1.6; lists all {len(manifest.files)} payload "
                  "files with matching SHA-256 and nothing else")

    stream_payload(handle, by_name[PAYLOAD], manifest, limits, progress, sink)
    report.files = len(manifest.files)
    report.payload_bytes = manifest.payload_size
    report.passed("payload", f"{len(manifest.files)} files, {manifest.payload_size} bytes, "
                  "every SHA-256 matches; no unsafe, extra or missing entries")


def _listed_members(by_name: dict[str, OuterMember], manifest: Manifest) -> list[str]:
    """Archive members other than the manifest, provenance, signatures, in-toto links and
    licenses, which must be exactly those the manifest lists (in sorted order)."""
    present = {n for n in by_name if not n.startswith((SIGNATURE_DIR, LINK_DIR, LICENSE_DIR))}
    present -= {MANIFEST, PROVENANCE}
    names = sorted(present | set(manifest.members))
    for member_name in names:
        if member_name not in manifest.members:
            raise _fail("E_MEMBER_UNLISTED", f"member {member_name} is not listed in the "
                        "manifest", check="manifest", member=member_name)
        if member_name not in by_name:
            raise _fail("E_MEMBER_MISSING", f"member {member_name} listed in the manifest is "
                        "missing", check="manifest", member=member_name)
    return names


def verify_bundle(
    bundle: Any, trust: Any, *, limits: Limits | None = None,
    progress: ProgressFn | None = None,
) -> VerifyReport:
    """Verify the bundle file at ``bundle`` against the trust root file at ``trust``.

    ``trust`` may also be the trust root's bytes or a parsed :class:`TrustRoot`.
    Returns a :class:`VerifyReport`; check ``report.ok`` (a bad bundle is a failed
    report, never an exception).

    Raises:
        InputError: ``E_NOT_FOUND`` or ``E_NOT_A_FILE`` (the bundle or the trust root
            file); ``E_TOO_LARGE`` (a trust root file over 16 MiB); a malformed pinned
            trust root, as :func:`verify_open_bundle`.
        EnvironmentProblem: ``E_PERMISSION`` (either file may not be read).
    """
    from pathlib import Path

    from oemkit._fs import open_input, read_input

    pinned = trust if isinstance(trust, (bytes, TrustRoot)) else read_input(
        Path(trust), "trust root")
    with open_input(Path(bundle), "bundle") as handle:
        return verify_open_bundle(handle, pinned, name=str(bundle), limits=limits,
                                  progress=progress)


@dataclass(frozen=True)
class MemberInfo:
    """One outer member as ``inspect`` lists it: its name and size in bytes."""

    name: str
    size: int

    def to_dict(self) -> dict[str, Any]:
        """``{"name", "size"}``."""
        return {"name": self.name, "size": self.size}


@dataclass(frozen=True)
class BundleInfo:
    """What :func:`inspect_bundle` found: the bundle's structure and manifest, UNVERIFIED
    (``verified`` is always False: nothing here is believed)."""

    #: The bundle as it was named.
    bundle: str
    #: SHA-256 (hex) of the manifest member's exact bytes.
    manifest_sha256: str
    #: The outer members in archive order.
    members: tuple[MemberInfo, ...]
    #: The key ids the signature members are named after (``signatures/<keyid>...``).
    signatures: tuple[str, ...]
    #: The parsed manifest (its schema checked, not its signatures).
    manifest: Manifest

    @property
    def verified(self) -> bool:
        """Always False: inspecting decides nothing about trust."""
        return False

    def to_dict(self) -> dict[str, Any]:
        """The JSON ``oemkit inspect --json`` prints (after its ``ok``)."""
        return {
            "bundle": self.bundle,
            "verified": self.verified,
            "manifest_sha256": self.manifest_sha256,
            "members": [m.to_dict() for m in self.members],
            "signatures": list(self.signatures),
            "manifest": self.manifest.to_dict(),
        }


def inspect_bundle(bundle: Any, *, limits: Limits | None = None) -> BundleInfo:
    """What the bundle says about itself, without any trust decision (UNVERIFIED).

    Structure is still checked as verify checks it, with the same bounded reader: the
    outer archive (``scan_bundle``: names, sizes, order, counts), the manifest (strict,
    canonical JSON and its schema, ``parse_manifest``) and the member set it lists.
    Only the manifest's bytes are read; nothing is believed. Bad input raises a coded
    :class:`VerificationError`. The result's ``to_dict()`` is what ``oemkit inspect
    --json`` prints.

    Raises:
        InputError: ``E_NOT_FOUND``, ``E_NOT_A_FILE`` (the bundle path).
        EnvironmentProblem: ``E_PERMISSION``.
        VerificationError: the codes of :func:`scan_bundle`; ``E_TRUNCATED`` (the
            manifest member); ``E_MANIFEST_INVALID`` (:func:`parse_manifest`);
            ``E_MEMBER_MISSING`` (a member the manifest lists), ``E_MEMBER_UNLISTED``;
            ``E_PAYLOAD_DIGEST`` (the payload member's size is not the manifest's).
    """
    from pathlib import Path

    from oemkit._fs import open_input

    limits = limits or Limits()
    with open_input(Path(bundle), "bundle") as handle:
        members = scan_bundle(handle, limits)
        by_name = {m.name: m for m in members}
        manifest_bytes = read_member(handle, by_name[MANIFEST])
    manifest = parse_manifest(manifest_bytes)
    _listed_members(by_name, manifest)
    if by_name[PAYLOAD].size != manifest.members[PAYLOAD].size:
        raise _fail("E_PAYLOAD_DIGEST", f"{PAYLOAD} is {by_name[PAYLOAD].size} bytes, the "
                    f"manifest says {manifest.members[PAYLOAD].size}", check="payload",
                    member=PAYLOAD, expected=str(manifest.members[PAYLOAD].size),
                    actual=str(by_name[PAYLOAD].size))
    return BundleInfo(
        bundle=str(bundle),
        manifest_sha256=sha256_hex(manifest_bytes),
        members=tuple(MemberInfo(m.name, m.size) for m in members),
        signatures=tuple(m.name[len(SIGNATURE_DIR):-len(".sigstore.json")] for m in members
                         if m.name.startswith(SIGNATURE_DIR)),
        manifest=manifest,
    )
