"""Writing trust roots: init, add, retire and revoke keys, each as a new signed version.

Every new version is checked with the same code the verifier uses before it is written,
so a root that verifiers would reject (too few signatures, wrong keys) never lands on disk.
The exception is a *proposal* (``propose=True``): the same document, signed by none or
some of its root keys, which each holder then signs on their own machine
(:func:`sign_proposal`) or whose signed copies are joined (:func:`merge_proposals`); it is
a valid root exactly when the thresholds are met, and verifiers refuse it until then.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import replace

from oemkit._canonical import canonical_json, sha256_hex
from oemkit._time import now as utc_now
from oemkit.crypto.dsse import Envelope, make_envelope, sign, verify_signature
from oemkit.crypto.keys import PrivateKeyInfo, PublicKey, algorithm_of, key_id, public_pem
from oemkit.errors import InputError, UsageError, VerificationError, restate
from oemkit.models.trust import (
    MAX_KEYS,
    TRUST_ROOT_PAYLOAD_TYPE,
    USAGES,
    TrustKey,
    TrustRoot,
    Usage,
)
from oemkit.verify.trust import (
    SignedRoot,
    check_self_signed,
    check_successor,
    parse_root,
    proposal_status,
    root_candidates,
)


def _document(root: TrustRoot, signers: Sequence[PrivateKeyInfo]) -> bytes:
    payload = canonical_json(root.to_dict())
    env = make_envelope(signers, TRUST_ROOT_PAYLOAD_TYPE, payload)
    return _render(env, [k.keyid for k in signers])


def _render(env: Envelope, keyids: Sequence[str]) -> bytes:
    """The document's bytes, each signature labelled with its key id (a hint for humans;
    verifiers ignore it)."""
    import json

    obj = env.to_dict()
    for entry, keyid in zip(obj["signatures"], keyids, strict=True):
        entry["keyid"] = keyid
    return (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode("utf-8")


def _trust_key(
    public: PublicKey, usage: Sequence[Usage], name: str, *,
    not_before: dt.datetime | None = None, expires: dt.datetime | None = None,
) -> TrustKey:
    return TrustKey(
        keyid=key_id(public), name=name, algorithm=algorithm_of(public),
        public_key=public_pem(public), usage=tuple(usage), not_before=not_before,
        expires=expires,
    )


def init_root(
    root_keys: Sequence[PrivateKeyInfo], threshold: int = 1, *,
    issued: dt.datetime | None = None, names: Sequence[str] = (),
    publics: Sequence[tuple[PublicKey, str]] = (), propose: bool = False,
) -> bytes:
    """Version 1: the given root keys, ``threshold`` of which must sign each new version.

    ``publics`` are root keys held elsewhere (public key, name): only a ``propose``d
    version 1 may list them, for their holders to sign (:func:`sign_proposal`).
    """
    if not root_keys and not publics:
        raise UsageError("E_USAGE", "at least one --root-key is required",
                         hint="oemkit trust init --root-key root.key --out trust-root.json")
    if publics and not propose:
        raise UsageError("E_USAGE", "--root-pub names a root key that is not here to sign",
                         hint="add --propose: the holders of those keys then sign the "
                              "proposal with 'oemkit trust sign' (docs/TRUST.md)")
    count = len(root_keys) + len(publics)
    if threshold < 1 or threshold > count:
        raise UsageError("E_USAGE", f"--threshold {threshold} is impossible with "
                         f"{count} root key(s)",
                         hint="choose a threshold between 1 and the number of root keys")
    when = issued or utc_now()
    given = [(k.public, names[i] if i < len(names) else f"root-{i + 1}")
             for i, k in enumerate(root_keys)]
    given += [(pub, name or f"root-{len(root_keys) + i + 1}")
              for i, (pub, name) in enumerate(publics)]
    keys = tuple(_trust_key(pub, ("root",), name, not_before=None) for pub, name in given)
    if len({k.keyid for k in keys}) != len(keys):
        raise UsageError("E_USAGE", "the same root key was given twice",
                         hint="pass distinct --root-key files")
    root = TrustRoot(1, when, {u: (threshold if u == "root" else 1) for u in USAGES}, keys)
    doc = _document(root, root_keys)
    if propose:
        parse_root(doc, proposal=True)
    else:
        check_self_signed(parse_root(doc))
    return doc


def _successor(current: SignedRoot, new_root: TrustRoot,
               signers: Sequence[PrivateKeyInfo], propose: bool = False) -> bytes:
    doc = _document(new_root, signers)
    if propose:  # version and revocations judged now, the thresholds by the holders
        proposed = parse_root(doc, proposal=True)
        _require_root_signers(proposed, signers, current.root)
        try:
            proposal_status(proposed, current.root)
        except VerificationError as exc:
            raise restate(exc, InputError) from exc
        return doc
    try:
        check_successor(current.root, parse_root(doc), f"trust root v{new_root.version}")
    except VerificationError as exc:
        raise restate(exc, InputError, hint="pass --sign-with for enough of the current "
                      f"root keys (threshold {current.root.thresholds['root']})") from exc
    return doc


def add_key(
    current: SignedRoot, public: PublicKey, usage: Sequence[Usage],
    signers: Sequence[PrivateKeyInfo], *, name: str = "", expires: dt.datetime | None = None,
    not_before: dt.datetime | None = None, issued: dt.datetime | None = None,
    propose: bool = False,
) -> bytes:
    """Next version with ``public`` added for ``usage`` (a proposal when ``propose``)."""
    keyid = key_id(public)
    if current.root.key(keyid) is not None:
        raise InputError("E_TRUST_KEY_EXISTS", f"key {keyid} is already in the trust root",
                         hint="use retire-key or revoke-key to change an existing key")
    if len(current.root.keys) >= MAX_KEYS:
        raise InputError("E_TRUST_TOO_MANY_KEYS", f"trust root v{current.root.version} "
                         f"already lists {len(current.root.keys)} keys (limit {MAX_KEYS})",
                         hint="hosts refuse a trust root with more keys; retired and "
                              "compromised keys stay listed, so plan rotations to reuse "
                              "fewer keys")
    when = issued or utc_now()
    new_key = _trust_key(public, usage, name or f"{usage[0]}-{keyid[:8]}",
                         not_before=not_before, expires=expires)
    new_root = current.root.next_version(when, keys=(*current.root.keys, new_key))
    return _successor(current, new_root, signers, propose)


def _change_status(current: SignedRoot, keyid: str, status: str,
                   signers: Sequence[PrivateKeyInfo], issued: dt.datetime | None,
                   propose: bool = False) -> bytes:
    key = current.root.key(keyid)
    if key is None:
        matches = [k for k in current.root.keys if k.keyid.startswith(keyid)] if keyid else []
        if len(matches) != 1:
            raise InputError("E_TRUST_KEY_UNKNOWN", f"no single key {keyid!r} in the trust root",
                             hint="'oemkit trust show ROOT' lists the key ids")
        key = matches[0]
    if key.status == "compromised":
        raise InputError("E_TRUST_KEY_STATUS", f"key {key.keyid[:16]}… ({key.name}) is "
                         "compromised; that status is final",
                         hint="a revoked key can never be trusted again; add a new key instead")
    if key.status == status:
        raise InputError("E_TRUST_KEY_STATUS", f"key {key.keyid[:16]}… ({key.name}) is already "
                         f"{status}", hint="nothing to change")
    when = issued or utc_now()
    changed = replace(key, status=status,  # type: ignore[arg-type]
                      retired_at=when if status == "retired" else key.retired_at)
    keys = tuple(changed if k.keyid == key.keyid else k for k in current.root.keys)
    _check_thresholds_kept(current.root, key, keys, "retire" if status == "retired" else "revoke")
    return _successor(current, current.root.next_version(when, keys=keys), signers, propose)


def _check_thresholds_kept(root: TrustRoot, key: TrustKey, keys: Sequence[TrustKey],
                          verb: str) -> None:
    """Refuse a change that leaves a usage of ``key`` with fewer active keys than its threshold.

    A root always needs ``thresholds.root`` active root keys. Another usage may have no
    active key at all (as after ``trust init``), but not some keys yet fewer than its
    threshold: nothing could then be signed for it.
    """
    for usage in key.usage:
        need = root.thresholds[usage]
        left = len([k for k in keys if usage in k.usage and k.status == "active"])
        if left >= need or (usage != "root" and left == 0):
            continue
        if usage != "root" and verb == "revoke":
            # Revoking a compromised key must never wait: signing for this usage fails
            # closed until new keys are added, which is the safe outcome.
            continue
        raise InputError(
            "E_TRUST_BELOW_THRESHOLD", f"cannot {verb} key {key.keyid[:16]}… ({key.name}): "
            f"it would leave {left} active {usage} key(s), below the {usage} threshold {need}",
            hint=f"add another {usage} key first (oemkit trust add-key ROOT --pub NEW.pub "
                 f"--usage {usage} --sign-with ROOT.key), then {verb} this one"
                 + ("" if left == 0 else
                    f"; or first lower the {usage} threshold (oemkit trust set-threshold ROOT "
                    f"{usage} {left} --sign-with ROOT.key)"))


def retire_key(current: SignedRoot, keyid: str, signers: Sequence[PrivateKeyInfo], *,
               issued: dt.datetime | None = None, propose: bool = False) -> bytes:
    """Next version with the key retired: what it signed before now stays valid."""
    return _change_status(current, keyid, "retired", signers, issued, propose)


def revoke_key(current: SignedRoot, keyid: str, signers: Sequence[PrivateKeyInfo], *,
               issued: dt.datetime | None = None, propose: bool = False) -> bytes:
    """Next version with the key compromised: everything it signed becomes invalid."""
    return _change_status(current, keyid, "compromised", signers, issued, propose)


def set_threshold(current: SignedRoot, usage: Usage, threshold: int,
                  signers: Sequence[PrivateKeyInfo], *,
                  issued: dt.datetime | None = None, propose: bool = False) -> bytes:
    """Next version requiring ``threshold`` valid signatures for ``usage``."""
    if usage not in USAGES:
        raise UsageError("E_USAGE", f"unknown usage {usage!r}", hint=f"choose from {USAGES}")
    available = len([k for k in current.root.keys_for(usage) if k.status == "active"])
    if threshold < 1 or threshold > available:
        raise UsageError("E_USAGE", f"threshold {threshold} for {usage} is impossible with "
                         f"{available} active {usage} key(s)",
                         hint=f"add {usage} keys first, or choose 1..{available}")
    thresholds = {**current.root.thresholds, usage: threshold}
    new_root = current.root.next_version(issued or utc_now(), thresholds=thresholds)
    return _successor(current, new_root, signers, propose)


# --------------------------------------------------------------------------- proposals


def _known(proposal: TrustRoot, current: TrustRoot | None) -> dict[str, TrustKey]:
    return {k.keyid: k for k in root_candidates(proposal, current)}


def _require_root_signers(proposal: SignedRoot, signers: Sequence[PrivateKeyInfo],
                          current: TrustRoot | None) -> None:
    """Refuse a key whose signature no verifier would count for ``proposal``.

    Raises:
        InputError: E_TRUST_KEY_UNKNOWN.
    """
    known = _known(proposal.root, current)
    for key in signers:
        if key.keyid not in known:
            versions = f"v{proposal.root.version}" + (
                f" or v{current.version}" if current is not None else "")
            raise InputError(
                "E_TRUST_KEY_UNKNOWN", f"{key.source} (key {key.keyid[:16]}…) is not an "
                f"active root key of {versions}: its signature would not count",
                hint="sign with one of: " + ", ".join(sorted(k.name for k in known.values())))


def _labelled(env: Envelope, known: dict[str, TrustKey]) -> list[tuple[bytes, str]]:
    """Each signature of ``env`` made by one of ``known``, once per key, with its key id."""
    from oemkit.crypto.keys import load_public

    out: list[tuple[bytes, str]] = []
    seen: set[str] = set()
    publics = [(kid, load_public(k.public_key, kid)) for kid, k in known.items()]
    for sig in env.signatures:
        for kid, public in publics:
            if kid not in seen and verify_signature(public, env.payload_type, env.payload,
                                                    sig):
                out.append((sig, kid))
                seen.add(kid)
                break
    return out


def sign_proposal(proposal: SignedRoot, signers: Sequence[PrivateKeyInfo],
                  current: TrustRoot | None = None) -> tuple[bytes, list[str], list[str]]:
    """Add each signer's signature over the proposal's exact payload: the new document,
    the key ids that signed now and those that had signed already (nothing added).

    Signatures no root key of the proposal (or of ``current``) made are dropped.

    Raises:
        InputError: E_TRUST_KEY_UNKNOWN (a signer whose signature would not count).
        UsageError: E_USAGE (a version after 1 without ``current``).
        VerificationError: E_TRUST_ROLLBACK, E_TRUST_SKIP, E_TRUST_UNREVOKED.
    """
    proposal_status(proposal, current)
    _require_root_signers(proposal, signers, current)
    env = proposal.envelope
    kept = _labelled(env, _known(proposal.root, current))
    have = {kid for _, kid in kept}
    added, already = [], []
    for key in signers:
        if key.keyid in have:
            already.append(key.keyid)
            continue
        kept.append((sign(key, env.payload_type, env.payload), key.keyid))
        have.add(key.keyid)
        added.append(key.keyid)
    out = Envelope(env.payload_type, env.payload, tuple(sig for sig, _ in kept))
    return _render(out, [kid for _, kid in kept]), added, already


def merge_proposals(copies: Sequence[tuple[str, SignedRoot]],
                    current: TrustRoot | None = None) -> tuple[bytes, int]:
    """One document with every root-key signature the copies of one proposal carry (each
    key once), and the number of signatures dropped (by no root key, or a second by one).

    Raises:
        InputError: E_TRUST_MISMATCH (the copies are not of the same proposal).
        UsageError: E_USAGE (a version after 1 without ``current``).
        VerificationError: E_TRUST_ROLLBACK, E_TRUST_SKIP, E_TRUST_UNREVOKED.
    """
    first_name, first = copies[0]
    for name, copy in copies[1:]:
        if copy.envelope.payload != first.envelope.payload:
            digest = {n: sha256_hex(c.envelope.payload)[:16]
                      for n, c in ((first_name, first), (name, copy))}
            raise InputError(
                "E_TRUST_MISMATCH", f"{name} (v{copy.root.version}, payload "
                f"{digest[name]}…) is not the proposal {first_name} is (v{first.root.version}, "
                f"payload {digest[first_name]}…)",
                hint="merge only copies of one proposal, each signed as it was handed out")
    proposal_status(first, current)
    known = _known(first.root, current)
    signatures = tuple(sig for _, c in copies for sig in c.envelope.signatures)
    kept = _labelled(Envelope(first.envelope.payload_type, first.envelope.payload, signatures),
                     known)
    out = Envelope(first.envelope.payload_type, first.envelope.payload,
                   tuple(sig for sig, _ in kept))
    return _render(out, [kid for _, kid in kept]), len(signatures) - len(kept)
