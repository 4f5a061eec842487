"""Pure trust-root verification: self-signatures, version chaining, rollback and skips.

Inputs are bytes and already-trusted roots; outputs are trusted roots or a typed error.
Version N+1 must be signed by a threshold of version N's active root keys *and* by a
threshold of its own (TUF-style), and versions advance by exactly one.

Carried roots (a bundle's ``trust/root-N.json``) come from anyone, so :func:`walk_chain`
spends almost nothing on them before they are trusted: versions are read from the member
names (``N`` must be the document's version), versions at or below the pinned one are
neither read nor parsed, more than :data:`MAX_CHAIN` newer ones are refused at once, and
each newer one, in order, is checked for its counts and its predecessor's root signatures
over its exact payload bytes *before* its key list is loaded. The walk stops at the first
failure.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from oemkit._canonical import canonical_json, parse_json
from oemkit.crypto.dsse import Envelope, parse_envelope, signers_of
from oemkit.crypto.keys import load_public
from oemkit.errors import InputError, OemkitError, UsageError, VerificationError, restate
from oemkit.models.trust import (
    MAX_ROOT_BYTES,
    MAX_ROOT_SIGNATURES,
    TRUST_ROOT_PAYLOAD_TYPE,
    TrustKey,
    TrustRoot,
)

#: Carried root versions beyond this many steps past the pinned one are not walked.
MAX_CHAIN = 256
#: A carried root's member name: ``trust/root-N.json``, ``N`` its version in decimal.
CARRIED_NAME = re.compile(r"trust/root-([1-9][0-9]{0,17})\.json")
#: A carried root: its member name and its bytes, or a function reading them (called only
#: for a version the walk reaches).
Carried = tuple[str, bytes | Callable[[], bytes]]


@dataclass(frozen=True)
class SignedRoot:
    """A parsed trust root document: the exact envelope and its decoded payload."""

    envelope: Envelope
    root: TrustRoot


def parse_root_envelope(data: bytes, what: str = "trust root", *,
                        proposal: bool = False) -> tuple[Envelope, Any]:
    """The envelope and its payload as JSON, with the cheap checks only: JSON, DSSE shape,
    payload type, at most :data:`MAX_ROOT_SIGNATURES` signatures, and the payload's shape
    and counts (``TrustRoot.check_shape``), and at most :data:`MAX_ROOT_BYTES` bytes in
    all. No key is loaded, no signature checked. A ``proposal`` may carry no signature
    yet.

    Raises:
        InputError: ``E_TOO_LARGE`` (over :data:`MAX_ROOT_BYTES`, before parsing);
            ``E_TRUST_INVALID`` (a PEM key, license or CRL instead; not strict JSON,
            another payload type, a payload that is not JSON or not a trust root's
            shape); ``E_ENVELOPE`` or ``E_BASE64`` (not a DSSE envelope);
            ``E_TOO_MANY_SIGNATURES`` (over :data:`MAX_ROOT_SIGNATURES`);
            ``E_TRUST_TOO_MANY_KEYS`` (over 256 keys).
    """
    if len(data) > MAX_ROOT_BYTES:
        raise InputError("E_TOO_LARGE", f"{what} is {len(data)} bytes (limit "
                         f"{MAX_ROOT_BYTES} for a trust root document)",
                         hint="the trust root is hostile or damaged")
    _not_pem(data, what)
    obj = parse_json(data, what=what, code="E_TRUST_INVALID")
    if not proposal and isinstance(obj, dict) and obj.get("signatures") == [] and obj.get(
            "payloadType") == TRUST_ROOT_PAYLOAD_TYPE:
        raise InputError("E_ENVELOPE", f"{what}: no signatures",
                         hint="an unsigned trust-root proposal? its holders sign it with "
                              "'oemkit trust sign'; 'oemkit trust status' says who is missing")
    try:
        env = parse_envelope(obj, what, allow_unsigned=proposal)
    except InputError as exc:
        if exc.code != "E_ENVELOPE":
            raise
        raise restate(exc, InputError, hint="the trust root is damaged or was not written "
                      "by 'oemkit trust'; get it again from the vendor") from exc
    if env.payload_type != TRUST_ROOT_PAYLOAD_TYPE:
        raise InputError("E_TRUST_INVALID", f"{what} has payload type {env.payload_type!r}",
                         hint="pass a trust root written by 'oemkit trust'")
    if len(env.signatures) > MAX_ROOT_SIGNATURES:
        raise InputError("E_TOO_MANY_SIGNATURES", f"{what} carries {len(env.signatures)} "
                         f"signatures (limit {MAX_ROOT_SIGNATURES} for a trust root)",
                         hint="the trust root is hostile or damaged")
    payload = parse_json(env.payload, what=f"{what} payload", code="E_TRUST_INVALID")
    TrustRoot.check_shape(payload)
    return env, payload


_PEM = re.compile(rb"\s*-----BEGIN ([A-Z0-9 ]{1,40})-----")


def _not_pem(data: bytes, what: str) -> None:
    """A PEM file (a public or private key, a license, a CRL) where a trust root belongs
    is named for what it is, not as JSON that does not parse.

    Raises:
        InputError: ``E_TRUST_INVALID`` for a PEM file.
    """
    found = _PEM.match(data[:128])
    if found is None:
        return
    label = found.group(1).decode("ascii")
    kind = ("a public key" if label.endswith("PUBLIC KEY") else
            "a private key" if label.endswith("PRIVATE KEY") else f"a {label.lower()}")
    raise InputError("E_TRUST_INVALID", f"{what} is {kind} (a PEM file), not a trust root",
                     hint="pass the trust root JSON (e.g. trust-root.json); a trust root is "
                          "made from root keys with 'oemkit trust init' and lists the public "
                          "keys with 'oemkit trust add-key' (docs/TRUST.md)")


def _complete(env: Envelope, payload: Any, what: str) -> SignedRoot:
    """Load the keys (``TrustRoot.from_dict``) and require the canonical form."""
    root = TrustRoot.from_dict(payload)
    try:
        canonical = canonical_json(root.to_dict())
    except InputError as exc:
        raise InputError("E_TRUST_INVALID", f"{what} payload has no canonical form "
                         f"({exc.message})", hint="trust roots must be written by "
                         "'oemkit trust'") from exc
    if canonical != env.payload:
        raise InputError("E_TRUST_INVALID", f"{what} payload is not in canonical form",
                         hint="trust roots must be written by 'oemkit trust'")
    return SignedRoot(env, root)


def parse_root(data: bytes, what: str = "trust root", *, proposal: bool = False) -> SignedRoot:
    """Decode a trust root document without judging its signatures (a ``proposal``, a
    version its root-key holders are still signing, may carry none yet).

    Raises:
        InputError: the codes of :func:`parse_root_envelope`; ``E_TRUST_INVALID`` (a
            field of the wrong type or range, a key listed twice, a key id not its key's,
            a payload not in canonical form); ``E_KEY_FORMAT`` or ``E_KEY_ALGORITHM`` (a
            public key that does not load); ``E_TRUST_WEAK_KEY`` (a small-order Ed25519
            key); ``E_TIME`` (an ``issued`` or key window time that is not ISO 8601 or
            lies outside 0001..9999 UTC).
    """
    env, payload = parse_root_envelope(data, what, proposal=proposal)
    return _complete(env, payload, what)


def _candidates(keys: Sequence[TrustKey]) -> list[tuple[str, object]]:
    return [(k.keyid, load_public(k.public_key, k.keyid)) for k in keys]


def count_root_signers(env: Envelope, by: TrustRoot) -> list[str]:
    """Key ids among ``by``'s active root keys that signed ``env``.

    Raises:
        InputError: only for a ``by`` not made by :func:`parse_root` (its keys are loaded
            there first): ``E_KEY_FORMAT`` or ``E_KEY_ALGORITHM``.
    """
    return signers_of(env, _candidates(by.active_root_keys()))  # type: ignore[arg-type]


def check_self_signed(signed: SignedRoot, what: str = "trust root") -> None:
    """The root must carry a threshold of signatures from its own active root keys.

    Raises:
        VerificationError: ``E_TRUST_THRESHOLD`` (fewer valid self-signatures than the
            root's ``root`` threshold); :func:`load_pinned` restates it as InputError.
    """
    signers = count_root_signers(signed.envelope, signed.root)
    need = signed.root.thresholds["root"]
    if len(signers) < need:
        raise VerificationError(
            "E_TRUST_THRESHOLD",
            f"{what} v{signed.root.version} has {len(signers)} valid root signature(s), "
            f"needs {need}",
            check="trust root signatures", expected=f">= {need}", actual=str(len(signers)),
            hint="the trust root was altered or signed by too few root keys",
        )


def _check_version(current: TrustRoot, got: int, what: str) -> None:
    want = current.version + 1
    if got <= current.version:
        raise VerificationError(
            "E_TRUST_ROLLBACK",
            f"{what} is version {got}, not newer than the trusted version {current.version}",
            check="trust root version", expected=str(want), actual=str(got),
            hint="a trust root may only move forward; this looks like a rollback",
        )
    if got != want:
        raise VerificationError(
            "E_TRUST_SKIP",
            f"{what} is version {got} but the next trusted version must be {want}",
            check="trust root version", expected=str(want), actual=str(got),
            hint=f"supply trust root version {want} as well (every version in between)",
        )


def _check_chained(current: TrustRoot, env: Envelope, got: int, what: str) -> None:
    """A threshold of ``current``'s active root keys signed ``env`` (the exact bytes)."""
    signers = count_root_signers(env, current)
    need = current.thresholds["root"]
    if len(signers) < need:
        raise VerificationError(
            "E_TRUST_THRESHOLD",
            f"{what} (v{got}) has {len(signers)} valid signature(s) from v{current.version}'s "
            f"root keys, needs {need}",
            check="trust root chain", expected=f">= {need}", actual=str(len(signers)),
            hint="a new trust root version must be signed by the previous version's root keys",
        )


def _check_unrevoked(current: TrustRoot, new: TrustRoot, what: str) -> None:
    for key in current.keys:
        successor_key = new.key(key.keyid)
        if key.status == "compromised" and (successor_key is None
                                            or successor_key.status != "compromised"):
            raise VerificationError(
                "E_TRUST_UNREVOKED",
                f"{what} (v{new.version}) drops or un-revokes key {key.keyid[:16]}…, which "
                f"v{current.version} marks compromised",
                check="trust root chain", expected="compromised",
                actual=successor_key.status if successor_key else "absent",
                hint="a compromised key stays compromised in every later version; this trust "
                     "root was forged or built wrongly")


def check_successor(current: TrustRoot, new: SignedRoot, what: str) -> None:
    """Judge ``new`` as the next version after ``current``: no rollback, no skip, thresholds.

    Raises:
        VerificationError: ``E_TRUST_ROLLBACK`` (not newer than ``current``);
            ``E_TRUST_SKIP`` (not exactly one newer); ``E_TRUST_UNREVOKED`` (a key
            ``current`` marks compromised is dropped or given another status);
            ``E_TRUST_THRESHOLD`` (too few signatures from ``current``'s root keys, or
            from its own). ``release.trust`` restates them as InputError (exit 3).
    """
    _check_version(current, new.root.version, what)
    _check_unrevoked(current, new.root, what)
    _check_chained(current, new.envelope, new.root.version, what)
    check_self_signed(new, what)


@dataclass(frozen=True)
class SignerSet:
    """One signature requirement of a proposed root: whose root keys, how many needed,
    which of them signed (names) and which have not yet."""

    of: str
    need: int
    signed: tuple[str, ...]
    missing: tuple[str, ...]

    @property
    def met(self) -> bool:
        """Whether enough of these keys signed."""
        return len(self.signed) >= self.need


@dataclass(frozen=True)
class ProposalStatus:
    """How far a proposed trust-root version is signed: its own root keys' threshold
    and, for a version after 1, the current version's (``chain``)."""

    version: int
    own: SignerSet
    chain: SignerSet | None
    unknown: int

    @property
    def complete(self) -> bool:
        """Whether verifiers accept it as it is (every requirement met)."""
        return self.own.met and (self.chain is None or self.chain.met)


def root_candidates(proposal: TrustRoot, current: TrustRoot | None) -> list[TrustKey]:
    """The keys whose signatures count for ``proposal``: its own active root keys and
    those of ``current``, the version it follows (each once).

    Raises:
        Nothing coded: it only selects keys of parsed roots.
    """
    keys = {k.keyid: k for k in proposal.active_root_keys()}
    if current is not None:
        keys.update({k.keyid: k for k in current.active_root_keys()})
    return list(keys.values())


def _signer_set(signed: set[str], by: TrustRoot, of: str) -> SignerSet:
    keys = sorted(by.active_root_keys(), key=lambda k: (k.name, k.keyid))
    return SignerSet(of, by.thresholds["root"],
                     tuple(k.name for k in keys if k.keyid in signed),
                     tuple(k.name for k in keys if k.keyid not in signed))


def proposal_status(proposal: SignedRoot, current: TrustRoot | None) -> ProposalStatus:
    """Judge how far ``proposal`` is signed, without raising for too few signatures.

    ``current`` is the version it follows (None for a version 1). Version, rollback and
    un-revocation are checked against it as :func:`check_successor` does.

    Raises:
        VerificationError: ``E_TRUST_ROLLBACK``, ``E_TRUST_SKIP``, ``E_TRUST_UNREVOKED``.
        UsageError: ``E_USAGE`` for a version after 1 without ``current``.
    """
    root, env = proposal.root, proposal.envelope
    what = f"the proposed trust root v{root.version}"
    if root.version > 1 and current is None:
        raise UsageError("E_USAGE", f"{what} follows v{root.version - 1}: its signatures "
                         "are judged against that version", hint="pass the current "
                         "trust root with --current")
    if current is not None:  # a version 1 given one is not newer: refused as a rollback
        _check_version(current, root.version, what)
        _check_unrevoked(current, root, what)
    # every signature checked once, against every key that could count
    signed = set(signers_of(env, _candidates(root_candidates(root, current))))  # type: ignore[arg-type]
    chain = _signer_set(signed, current, f"v{current.version}") if current else None
    return ProposalStatus(root.version, _signer_set(signed, root, f"v{root.version}"), chain,
                          len(env.signatures) - len(signed))


def require_complete(status: ProposalStatus, what: str) -> None:
    """Refuse a proposal its holders have not finished signing, naming who is missing.

    Raises:
        VerificationError: ``E_TRUST_THRESHOLD``.
    """
    for need in (status.chain, status.own):
        if need is None or need.met:
            continue
        lacking = need.need - len(need.signed)
        raise VerificationError(
            "E_TRUST_THRESHOLD", f"{what} (v{status.version}) has {len(need.signed)} of the "
            f"{need.need} signature(s) it needs from {need.of}'s root keys",
            check="trust root signatures", expected=f">= {need.need}",
            actual=str(len(need.signed)),
            hint=f"{lacking} more of: {', '.join(need.missing)} (each holder runs 'oemkit "
                 "trust sign PROPOSAL --key THEIR-KEY', or 'oemkit trust merge' joins the "
                 "copies they signed)")


def _carried_version(name: str) -> int:
    match = CARRIED_NAME.fullmatch(name)
    if match is None:
        raise VerificationError(
            "E_TRUST_INVALID", f"carried trust root {name!r} is not named "
            "trust/root-N.json (N its version, in decimal)", member=name,
            check="carried trust root", hint="the bundle was not built by oemkit, or altered")
    return int(match.group(1))


def _admit(current: TrustRoot, name: str, version: int, data: bytes) -> SignedRoot:
    """Judge the carried root ``name`` (named version ``version``) as ``current``'s
    successor, cheapest checks first; its keys are loaded only once the predecessor's
    root keys are known to have signed it."""
    try:
        env, payload = parse_root_envelope(data, name)
        if payload["version"] != version:
            raise InputError("E_TRUST_INVALID", f"{name} holds trust root version "
                             f"{payload['version']}, not {version}",
                             hint="the bundle was not built by oemkit, or altered")
    except OemkitError as exc:
        raise restate(exc, VerificationError, member=name,
                      check="carried trust root") from exc
    _check_chained(current, env, version, name)
    try:
        signed = _complete(env, payload, name)
    except OemkitError as exc:
        raise restate(exc, VerificationError, member=name,
                      check="carried trust root") from exc
    _check_unrevoked(current, signed.root, name)
    check_self_signed(signed, name)
    return signed


def walk_chain(
    pinned: TrustRoot, carried: Sequence[Carried]
) -> tuple[TrustRoot, list[int]]:
    """Advance from the pinned root through carried newer versions, in order.

    ``carried`` holds (member name, document bytes or a function returning them). Names
    must be ``trust/root-N.json``; versions at or below the pinned one are ignored (the
    bundle predates the host's root) and never read; newer ones must chain without gaps.
    Returns the newest trusted root and the versions walked.

    Raises:
        VerificationError: with ``member`` the carried root's name, at the first failure:
            ``E_TRUST_INVALID`` (a name not ``trust/root-N.json``, a document whose
            version is not ``N``, or one that does not parse); ``E_TRUST_CHAIN_LENGTH``
            (more than :data:`MAX_CHAIN` newer versions, before any is read);
            ``E_TRUST_SKIP`` (a gap); ``E_TRUST_ROLLBACK`` (a version given twice);
            ``E_TRUST_THRESHOLD``; ``E_TRUST_UNREVOKED``; and, restated from parsing
            (exit 1, not 3), ``E_TOO_LARGE``, ``E_TOO_MANY_SIGNATURES``, ``E_ENVELOPE``,
            ``E_BASE64``, ``E_TRUST_TOO_MANY_KEYS``, ``E_TRUST_WEAK_KEY``,
            ``E_KEY_FORMAT``, ``E_KEY_ALGORITHM``. A reading function passes on what it
            raises (``E_TRUNCATED`` for a bundle member).
    """
    named = [(_carried_version(name), i, name, data) for i, (name, data) in enumerate(carried)]
    newer = sorted(item for item in named if item[0] > pinned.version)
    if len(newer) > MAX_CHAIN:
        raise VerificationError("E_TRUST_CHAIN_LENGTH",
                                f"the bundle carries {len(newer)} newer trust roots "
                                f"(limit {MAX_CHAIN})", check="carried trust root",
                                hint="the bundle is hostile or damaged")
    current = pinned
    walked: list[int] = []
    for version, _, name, data in newer:
        try:
            _check_version(current, version, name)
            signed = _admit(current, name, version, data() if callable(data) else data)
        except VerificationError as exc:
            exc.member = name
            raise
        current = signed.root
        walked.append(current.version)
    return current, walked


def load_pinned(trust: Path | str | bytes | TrustRoot) -> TrustRoot:
    """A pinned trust root from a file, its bytes, or an already-parsed root: parsed and
    self-signed (a root that is not is ``InputError`` with the verification's code).

    The one pinned-root loader: :func:`oemkit.verify.bundle.verify_open_bundle`,
    ``host.media.plan_join`` and ``oemkit.license.load_trust`` call it. A parsed
    :class:`TrustRoot` is returned as it is (its caller vouches for it).

    Raises:
        InputError: for a file, ``E_NOT_FOUND``, ``E_NOT_A_FILE`` (a directory) or
            ``E_TOO_LARGE`` (over 16 MiB); the codes of :func:`parse_root` (named
            ``--trust``); ``E_TRUST_THRESHOLD`` (not properly self-signed: exit 3 here,
            with the hint to get the root again from the vendor).
        EnvironmentProblem: ``E_PERMISSION`` (the file may not be read).
    """
    if isinstance(trust, TrustRoot):
        return trust
    from oemkit._fs import read_input

    data = trust if isinstance(trust, bytes) else read_input(Path(trust), "trust root")
    signed = parse_root(data, "--trust")
    try:
        check_self_signed(signed, "--trust")
    except VerificationError as exc:
        raise restate(exc, InputError, hint="the pinned trust root is not properly signed; "
                      "get it again from the vendor") from exc
    return signed.root
