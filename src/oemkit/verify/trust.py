"""Pure trust-root verification: self-signatures, version chaining, rollback and skips.

Inputs are bytes and already-trusted roots; outputs are trusted roots or a typed error.
Version N+1 must be signed by a threshold of version N's active root keys *and* by a
threshold of its own (TUF-style), and versions advance by exactly one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from oemkit._canonical import canonical_json, parse_json
from oemkit.crypto.dsse import Envelope, parse_envelope, signers_of
from oemkit.crypto.keys import load_public
from oemkit.errors import InputError, OemkitError, VerificationError
from oemkit.models.trust import TRUST_ROOT_PAYLOAD_TYPE, TrustKey, TrustRoot

#: Carried root versions beyond this many steps past the pinned one are not walked.
MAX_CHAIN = 256


@dataclass(frozen=True)
class SignedRoot:
    """A parsed trust root document: the exact envelope and its decoded payload."""

    envelope: Envelope
    root: TrustRoot


def parse_root(data: bytes, what: str = "trust root") -> SignedRoot:
    """Decode a trust root document without judging its signatures."""
    obj = parse_json(data, what=what, code="E_TRUST_INVALID")
    env = parse_envelope(obj, what)
    if env.payload_type != TRUST_ROOT_PAYLOAD_TYPE:
        raise InputError("E_TRUST_INVALID", f"{what} has payload type {env.payload_type!r}",
                         hint="pass a trust root written by 'oemkit trust'")
    payload = parse_json(env.payload, what=f"{what} payload", code="E_TRUST_INVALID")
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


def _candidates(keys: Sequence[TrustKey]) -> list[tuple[str, object]]:
    return [(k.keyid, load_public(k.public_key, k.keyid)) for k in keys]


def count_root_signers(env: Envelope, by: TrustRoot) -> list[str]:
    """Key ids among ``by``'s active root keys that signed ``env``."""
    return signers_of(env, _candidates(by.active_root_keys()))  # type: ignore[arg-type]


def check_self_signed(signed: SignedRoot, what: str = "trust root") -> None:
    """The root must carry a threshold of signatures from its own active root keys."""
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


def check_successor(current: TrustRoot, new: SignedRoot, what: str) -> None:
    """Judge ``new`` as the next version after ``current``: no rollback, no skip, thresholds."""
    got = new.root.version
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
    for key in current.keys:
        successor_key = new.root.key(key.keyid)
        if key.status == "compromised" and (successor_key is None
                                            or successor_key.status != "compromised"):
            raise VerificationError(
                "E_TRUST_UNREVOKED",
                f"{what} (v{got}) drops or un-revokes key {key.keyid[:16]}…, which "
                f"v{current.version} marks compromised",
                check="trust root chain", expected="compromised",
                actual=successor_key.status if successor_key else "absent",
                hint="a compromised key stays compromised in every later version; this trust "
                     "root was forged or built wrongly")
    signers = count_root_signers(new.envelope, current)
    need = current.thresholds["root"]
    if len(signers) < need:
        raise VerificationError(
            "E_TRUST_THRESHOLD",
            f"{what} (v{got}) has {len(signers)} valid signature(s) from v{current.version}'s "
            f"root keys, needs {need}",
            check="trust root chain", expected=f">= {need}", actual=str(len(signers)),
            hint="a new trust root version must be signed by the previous version's root keys",
        )
    check_self_signed(new, what)


def walk_chain(
    pinned: TrustRoot, carried: Sequence[tuple[str, bytes]]
) -> tuple[TrustRoot, list[int]]:
    """Advance from the pinned root through carried newer versions, in order.

    ``carried`` holds (name, document bytes). Versions at or below the pinned one are
    ignored (the bundle predates the host's root); newer ones must chain without gaps.
    Returns the newest trusted root and the versions walked.
    """
    parsed: list[tuple[str, SignedRoot]] = []
    for name, data in carried:
        try:
            parsed.append((name, parse_root(data, name)))
        except OemkitError as exc:
            raise VerificationError(exc.code, exc.message, member=name,
                                    check="carried trust root", hint=exc.hint) from exc
    newer = sorted((p for p in parsed if p[1].root.version > pinned.version),
                   key=lambda p: p[1].root.version)
    if len(newer) > MAX_CHAIN:
        raise VerificationError("E_TRUST_CHAIN_LENGTH",
                                f"the bundle carries {len(newer)} newer trust roots",
                                hint="the bundle is hostile or damaged")
    current = pinned
    walked: list[int] = []
    for name, signed in newer:
        try:
            check_successor(current, signed, name)
        except VerificationError as exc:
            exc.member = name
            raise
        current = signed.root
        walked.append(current.version)
    return current, walked
