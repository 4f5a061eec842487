"""Writing trust roots: init, add, retire and revoke keys, each as a new signed version.

Every new version is checked with the same code the verifier uses before it is written,
so a root that verifiers would reject (too few signatures, wrong keys) never lands on disk.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import replace

from oemkit._canonical import canonical_json
from oemkit._time import now as utc_now
from oemkit.crypto.dsse import make_envelope
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
from oemkit.verify.trust import SignedRoot, check_self_signed, check_successor, parse_root


def _document(root: TrustRoot, signers: Sequence[PrivateKeyInfo]) -> bytes:
    payload = canonical_json(root.to_dict())
    env = make_envelope(signers, TRUST_ROOT_PAYLOAD_TYPE, payload)
    obj = env.to_dict()
    for entry, key in zip(obj["signatures"], signers, strict=True):
        entry["keyid"] = key.keyid  # a hint for humans; verifiers ignore it
    import json

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
) -> bytes:
    """Version 1: the given root keys, ``threshold`` of which must sign each new version."""
    if not root_keys:
        raise UsageError("E_USAGE", "at least one --root-key is required",
                         hint="oemkit trust init --root-key root.key --out trust-root.json")
    if threshold < 1 or threshold > len(root_keys):
        raise UsageError("E_USAGE", f"--threshold {threshold} is impossible with "
                         f"{len(root_keys)} root key(s)",
                         hint="choose a threshold between 1 and the number of root keys")
    when = issued or utc_now()
    keys = tuple(
        _trust_key(k.public, ("root",), names[i] if i < len(names) else f"root-{i + 1}",
                   not_before=None)
        for i, k in enumerate(root_keys)
    )
    if len({k.keyid for k in keys}) != len(keys):
        raise UsageError("E_USAGE", "the same root key was given twice",
                         hint="pass distinct --root-key files")
    root = TrustRoot(1, when, {u: (threshold if u == "root" else 1) for u in USAGES}, keys)
    doc = _document(root, root_keys)
    check_self_signed(parse_root(doc))
    return doc


def _successor(current: SignedRoot, new_root: TrustRoot,
               signers: Sequence[PrivateKeyInfo]) -> bytes:
    doc = _document(new_root, signers)
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
) -> bytes:
    """Next version with ``public`` added for ``usage``."""
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
    return _successor(current, new_root, signers)


def _change_status(current: SignedRoot, keyid: str, status: str,
                   signers: Sequence[PrivateKeyInfo], issued: dt.datetime | None) -> bytes:
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
    return _successor(current, current.root.next_version(when, keys=keys), signers)


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
               issued: dt.datetime | None = None) -> bytes:
    """Next version with the key retired: what it signed before now stays valid."""
    return _change_status(current, keyid, "retired", signers, issued)


def revoke_key(current: SignedRoot, keyid: str, signers: Sequence[PrivateKeyInfo], *,
               issued: dt.datetime | None = None) -> bytes:
    """Next version with the key compromised: everything it signed becomes invalid."""
    return _change_status(current, keyid, "compromised", signers, issued)


def set_threshold(current: SignedRoot, usage: Usage, threshold: int,
                  signers: Sequence[PrivateKeyInfo], *,
                  issued: dt.datetime | None = None) -> bytes:
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
    return _successor(current, new_root, signers)
