"""Signing a built bundle: one Sigstore v0.3 bundle (DSSE over the provenance) per key.

The bundle is rewritten through a temporary sibling with the signatures sorted by member
name, so signing is idempotent, order-independent and atomic. Before signing, the
provenance must bind this very manifest and payload: oemkit never signs a bundle that
would not verify.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from oemkit._canonical import sha256_hex
from oemkit._fs import (
    END_OF_ARCHIVE,
    OuterMember,
    atomic_output,
    copy_member,
    open_input,
    read_member,
    write_member,
)
from oemkit._time import parse_time
from oemkit.crypto.dsse import (
    INTOTO_PAYLOAD_TYPE,
    make_envelope,
    parse_sigstore_bundle,
    sigstore_bundle,
    verify_signature,
)
from oemkit.crypto.keys import PrivateKeyInfo
from oemkit.errors import InputError, OemkitError, UsageError, VerificationError, restate
from oemkit.models.manifest import LINK_DIR, MANIFEST, PAYLOAD, PROVENANCE, SIGNATURE_DIR

if TYPE_CHECKING:
    from oemkit.verify.bundle import Limits

ProgressFn = Callable[[int], None]


@dataclass(frozen=True)
class SignResult:
    path: Path
    added: tuple[str, ...]
    kept: tuple[str, ...]
    #: in-toto build link members written (``links/build.<keyid:8>.link``, one per key
    #: that had none, or a stale one); docs/INTOTO.md
    links: tuple[str, ...] = ()


def signature_member(keyid: str) -> str:
    return f"{SIGNATURE_DIR}{keyid}.sigstore.json"


def sign_bundle(bundle: Path | str, keys: Sequence[PrivateKeyInfo], *,
                progress: ProgressFn | None = None, limits: Limits | None = None) -> SignResult:
    """Add one signature per key (skipping keys that already signed); atomic rewrite.

    ``limits``: the reader limits (defaults as ``verify``'s; raise them for a giant bundle,
    as ``oemkit build`` says when it makes one).
    """
    if not keys:
        raise UsageError("E_USAGE", "no --key given", hint="oemkit sign BUNDLE --key bundle.key")
    path = Path(bundle)
    from oemkit.release.links import build_artifacts
    from oemkit.verify.bundle import Limits, _subject_digests, parse_manifest, scan_bundle

    limits = limits or Limits()
    with open_input(path, "bundle") as handle:
        members = scan_bundle(handle, limits)
        by_name = {m.name: m for m in members}
        provenance = read_member(handle, by_name[PROVENANCE])
        manifest_bytes = read_member(handle, by_name[MANIFEST])
        statement = _checked_statement(provenance)
        subjects = _subject_digests(statement)
        if subjects.get(MANIFEST) != sha256_hex(manifest_bytes):
            raise VerificationError(
                "E_MANIFEST_DIGEST", "the manifest does not match the provenance; refusing to "
                "sign", member=MANIFEST, check="provenance",
                hint="rebuild the bundle with 'oemkit build'")
        existing = {m.name: read_member(handle, m) for m in members
                    if m.name.startswith(SIGNATURE_DIR)}
        artifacts = build_artifacts(statement, parse_manifest(manifest_bytes), manifest_bytes)
        del statement  # megabytes on a bundle of many files: gone before the link is written
        links, new_links = _build_links(handle, members, artifacts, keys)
        added: list[str] = []
        kept: list[str] = []
        new_members = dict(existing)
        for key in keys:
            name = signature_member(key.keyid)
            if name in existing and _signed_by(existing[name], provenance, key):
                kept.append(key.keyid)
                continue
            env = make_envelope([key], INTOTO_PAYLOAD_TYPE, provenance)
            doc = json.dumps(sigstore_bundle(env, key.public), indent=2, sort_keys=True) + "\n"
            new_members[name] = doc.encode("utf-8")
            added.append(key.keyid)
        if not added and not new_links:
            return SignResult(path, (), tuple(kept))
        if len(new_members) > limits.max_signatures:
            raise InputError(
                "E_TOO_MANY_SIGNATURES", f"signing would give {path.name} {len(new_members)} "
                f"signature members ({len(existing)} present, {len(added)} new), more than "
                f"verifiers accept (limit {limits.max_signatures}); the bundle was not changed",
                hint="sign with fewer keys: a bundle needs only as many signatures as the "
                     "trust root's bundle threshold")
        expected_payload = subjects.get(PAYLOAD)
        with atomic_output(path, mode=path.stat().st_mode & 0o777) as out:
            for member in members:
                if member.name.startswith((SIGNATURE_DIR, LINK_DIR, "licenses/")):
                    continue
                handle.seek(member.offset)
                digest = copy_member(out, member.name, handle, member.size,
                                     progress if member.name == PAYLOAD else None)
                if member.name == PAYLOAD and digest != expected_payload:
                    raise VerificationError(
                        "E_PAYLOAD_DIGEST", "the payload does not match the provenance; "
                        "refusing to sign", member=PAYLOAD, check="payload",
                        expected=expected_payload, actual=digest,
                        hint="rebuild the bundle with 'oemkit build'")
            for name in sorted(links):
                write_member(out, name, links[name])
            for name in sorted(new_members):
                write_member(out, name, new_members[name])
            for member in members:
                if member.name.startswith("licenses/"):
                    write_member(out, member.name, read_member(handle, member))
            out.write(END_OF_ARCHIVE)
    return SignResult(path, tuple(added), tuple(kept), tuple(new_links))


def _build_links(handle: BinaryIO, members: Sequence[OuterMember],
                 artifacts: tuple[dict[str, dict[str, str]], dict[str, dict[str, str]]],
                 keys: Sequence[PrivateKeyInfo]) -> tuple[dict[str, bytes], list[str]]:
    """Every link member after signing (those present, one per key added or refreshed)
    and the names written anew: the in-toto build link (release.links) each key signs,
    over the build's (materials, products)."""
    from oemkit.release.links import artifacts_payload, link_is_current, link_member, sign_link

    links = {m.name: read_member(handle, m) for m in members if m.name.startswith(LINK_DIR)}
    payload = artifacts_payload(*artifacts)
    written: list[str] = []
    for key in keys:
        name = link_member(key.public)
        if name in links and link_is_current(links[name], payload, key.public):
            continue
        links[name] = sign_link(payload, key)
        written.append(name)
    return links, written


def _checked_statement(provenance: bytes) -> dict[str, Any]:
    """The provenance statement, refused unless ``verify`` would accept it."""
    from oemkit.verify.bundle import _statement

    try:
        statement = _statement(provenance)
        parse_time(statement["predicate"]["runDetails"]["metadata"]["finishedOn"],
                   "provenance finishedOn")
    except OemkitError as exc:
        raise restate(exc, VerificationError, message=f"{exc.message}; refusing to sign",
                      member=PROVENANCE, check="provenance",
                      hint="rebuild the bundle with 'oemkit build'") from exc
    return statement


def _signed_by(data: bytes, provenance: bytes, key: PrivateKeyInfo) -> bool:
    try:
        env = parse_sigstore_bundle(data, "signature")
    except OemkitError:
        return False
    return env.payload == provenance and any(
        verify_signature(key.public, env.payload_type, env.payload, s) for s in env.signatures)
