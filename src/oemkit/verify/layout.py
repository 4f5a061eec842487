"""A bundle checked against a customer's in-toto layout, by in-toto itself (docs/INTOTO.md).

For the CLI (``oemkit verify BUNDLE --layout LAYOUT --layout-key KEY [--layout-key KEY]``),
call exactly::

    from oemkit.verify.layout import LayoutReport, verify_layout

    report: LayoutReport = verify_layout(bundle, layout, layout_keys, limits=limits)

``bundle``: the ``.oemb`` path; ``layout``: the layout file (path, or its bytes);
``layout_keys``: the layout owner's public key files (PEM paths, or their bytes), each of
which must have signed the layout; ``limits``: the reader limits ``verify`` already builds
from ``--max-*`` (optional). It returns a :class:`LayoutReport` on success (``to_dict()``
is the ``"layout"`` object for ``--json``; ``summary()`` one line for the terminal) and
raises an :class:`~oemkit.errors.OemkitError` otherwise (the CLI's ``guard`` renders it:
``VerificationError`` exit 1, ``InputError`` exit 3, ``EnvironmentProblem`` exit 4). It
does not judge the bundle against a trust root: run ``verify_bundle`` first when
``--trust`` is given, as ``oemkit verify`` does today, then this. Import this module only
when ``--layout`` is given: it imports in_toto (about 90 ms) when called.

How: the bundle's payload is unpacked (each file checked against the bundle's manifest on
the way, by ``verify.payload.stream_payload``) with the manifest as ``oemkit-bundle.json``
into a temporary directory, its ``links/*.link`` members into another, and
``in_toto.verifylib.in_toto_verify`` runs there: layout signatures, expiry, link signatures
and thresholds, artifact rules, inspections (run in that directory, so the products the
signed link records are compared with the bundle's actual files). in-toto's exceptions
become oemkit codes: ``E_LAYOUT_INVALID``, ``E_LAYOUT_SIGNATURE``, ``E_LAYOUT_EXPIRED``,
``E_LINK_MISSING``, ``E_LINK_UNAUTHORIZED``, ``E_LINK_SIGNATURE``, ``E_LINK_INVALID``,
``E_LAYOUT_RULE``, ``E_LAYOUT_INSPECTION``.

Unlike the rest of ``verify``, this module touches files (the temporary directories) and
the clock (in-toto reads it for the layout's expiry), and changes the process's working
directory while in-toto runs (in-toto runs inspections in the current directory; a lock
keeps two calls in one process apart).
"""

from __future__ import annotations

import ast
import contextlib
import hashlib
import json
import os
import re
import tempfile
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from oemkit._fs import open_input, read_input, read_member
from oemkit.crypto.keys import PublicKey
from oemkit.errors import EnvironmentProblem, InputError, VerificationError
from oemkit.models.manifest import LINK_DIR, MANIFEST, PAYLOAD, FileEntry
from oemkit.verify.bundle import Limits, _listed_members, parse_manifest, scan_bundle
from oemkit.verify.payload import stream_payload

#: A link member's name: ``links/<step>.<8 hex>.link`` (in-toto's link file name).
_LINK_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}\.[0-9a-f]{8}\.link")
#: A layout file larger than this is not read.
MAX_LAYOUT_BYTES = 1 << 20
#: in-toto runs inspections in the current directory: one verification at a time.
_CWD_LOCK = threading.Lock()
_HINT_LAYOUT = "ask your security team for the layout file and the owner's public key"
_ALTERED = "the bundle was altered after signing; obtain a fresh copy from the vendor"


@dataclass(frozen=True)
class LayoutReport:
    """What a passed in-toto verification established (failures raise instead)."""

    #: The bundle as it was named.
    bundle: str
    #: The layout as it was named (``"<bytes>"`` when given as bytes).
    layout: str
    #: The layout's expiry (as the layout writes it).
    expires: str
    #: in-toto key ids of the layout keys, each of which verified a layout signature.
    layout_keys: tuple[str, ...]
    #: The layout's steps and inspections, in order.
    steps: tuple[str, ...]
    inspections: tuple[str, ...]
    #: The link files that counted: validly signed by a functionary the layout names.
    links: tuple[str, ...]
    #: in-toto key ids of those functionaries.
    functionaries: tuple[str, ...]
    #: Payload files unpacked and checked.
    files: int

    @property
    def ok(self) -> bool:
        """Always True: a failed verification raises."""
        return True

    def summary(self) -> str:
        """One line for the terminal."""
        keys = ", ".join(k[:16] + "…" for k in self.functionaries)
        return (f"in-toto layout {self.layout} (expires {self.expires}): steps "
                f"{', '.join(self.steps)} signed by {keys}; {self.files} files match")

    def to_dict(self) -> dict[str, Any]:
        """The ``"layout"`` object of ``oemkit verify --layout --json``."""
        return {"ok": True, "bundle": self.bundle, "layout": self.layout,
                "expires": self.expires, "layout_keys": list(self.layout_keys),
                "steps": list(self.steps), "inspections": list(self.inspections),
                "links": list(self.links), "functionaries": list(self.functionaries),
                "files": self.files}


@dataclass(frozen=True)
class Extracted:
    """What :func:`extract_for_layout` wrote."""

    #: The verification directory: the payload files and ``oemkit-bundle.json``.
    directory: Path
    #: The folder holding the link files (``build.<keyid:8>.link``).
    link_dir: Path
    #: The link file names written there.
    links: tuple[str, ...]
    #: Payload files written.
    files: int


#: A link member holding more JSON values than this is refused before it is parsed.
MAX_LINK_VALUES = 64


def judge_links(links: Iterable[tuple[str, bytes]],
                signers: Sequence[tuple[str, PublicKey]]) -> int:
    """``oemkit verify``'s check of the in-toto link members (``links/*``), pure and
    cheap (no in_toto, no securesystemslib): each must be named ``links/STEP.KEYID8.link``,
    be exactly the JSON in-toto writes (``json.dumps(envelope, sort_keys=True)``) of a DSSE
    envelope with payload type ``application/vnd.in-toto+json``, canonical base64 and one
    signature, whose key id is the in-toto key id of a key that signed this bundle
    (``signers``: oemkit key id and public key of each trusted bundle signer) and which
    verifies under that key. So no byte of a link can change unnoticed, as no byte of the
    signed members can. Returns how many links were checked. What the links *say* is
    judged by in-toto against a layout (:func:`verify_layout`).

    Raises:
        VerificationError: ``E_LINK_INVALID`` (name, JSON, form, fields, base64),
            ``E_LINK_SIGNATURE`` (not signed by a key that signed the bundle, or the
            signature does not verify).
    """
    import base64
    import binascii

    from oemkit._canonical import parse_json
    from oemkit.crypto.dsse import INTOTO_PAYLOAD_TYPE, verify_signature

    by_keyid = {intoto_keyid(public): public for _, public in signers}
    count = 0
    for name, data in links:
        count += 1

        def bad(detail: str, name: str = name) -> VerificationError:
            return VerificationError("E_LINK_INVALID", f"{name} {detail}", member=name,
                                     check="in-toto links", hint=_ALTERED)

        if not _LINK_NAME.fullmatch(name[len(LINK_DIR):]):
            raise bad("is not named as an in-toto link (links/STEP.KEYID8.link)")
        if data.count(b",") + data.count(b":") > MAX_LINK_VALUES:
            raise bad("holds more JSON values than a DSSE envelope with one signature")
        try:
            obj = parse_json(data, what=name)
        except InputError as exc:
            raise bad(f"is not JSON ({exc.message})") from exc
        sigs = obj.get("signatures") if isinstance(obj, dict) else None
        if (not isinstance(obj, dict) or set(obj) != {"payload", "payloadType", "signatures"}
                or not isinstance(sigs, list) or len(sigs) != 1 or not isinstance(sigs[0], dict)
                or set(sigs[0]) != {"keyid", "sig"}
                or not all(isinstance(v, str) for v in (obj["payload"], obj["payloadType"],
                                                        sigs[0]["keyid"], sigs[0]["sig"]))):
            raise bad("is not a DSSE envelope with exactly one signature {keyid, sig}")
        if json.dumps(obj, sort_keys=True).encode("utf-8") != data:
            raise bad("is not in the form in-toto writes (json.dumps, sorted keys)")
        if obj["payloadType"] != INTOTO_PAYLOAD_TYPE:
            raise bad(f"has payload type {obj['payloadType']!r}, not {INTOTO_PAYLOAD_TYPE}")
        try:
            payload = base64.b64decode(obj["payload"], validate=True)
            sig = base64.b64decode(sigs[0]["sig"], validate=True)
        except (binascii.Error, ValueError) as exc:
            raise bad("has a payload or signature that is not base64") from exc
        if (base64.b64encode(payload).decode() != obj["payload"]
                or base64.b64encode(sig).decode() != sigs[0]["sig"]):
            raise bad("has a payload or signature in non-canonical base64")
        keyid = sigs[0]["keyid"]
        public = by_keyid.get(keyid)
        if public is None:
            raise VerificationError(
                "E_LINK_SIGNATURE", f"{name} is signed by key {keyid[:16]}…, which did not "
                "sign this bundle", member=name, check="in-toto links", hint=_ALTERED)
        if not name.endswith(f".{keyid[:8]}.link"):
            raise bad(f"is named for another key than the one that signed it ({keyid[:8]})")
        if not verify_signature(public, INTOTO_PAYLOAD_TYPE, payload, sig):
            raise VerificationError(
                "E_LINK_SIGNATURE", f"{name}: the signature does not verify under key "
                f"{keyid[:16]}…", member=name, check="in-toto links", hint=_ALTERED)
    return count


def extract_for_layout(bundle: Path | str, directory: Path | str, link_dir: Path | str, *,
                       limits: Limits | None = None) -> Extracted:
    """Write what ``in-toto-verify`` needs from ``bundle``: its payload files (each checked
    against the bundle's manifest while it streams) and the manifest (as
    ``oemkit-bundle.json``) into ``directory``, its in-toto links into ``link_dir``; both
    folders must exist and be empty. Nothing here is judged by a trust root: in-toto
    judges it against the layout (or run ``oemkit verify --trust`` as well).

    Raises:
        InputError: ``E_NOT_FOUND``, ``E_NOT_A_FILE`` (the bundle); ``E_DEST_NOT_EMPTY``.
        EnvironmentProblem: ``E_PERMISSION``, ``E_WRITE``.
        VerificationError: the codes of :func:`oemkit.verify.bundle.scan_bundle` and
            :func:`oemkit.verify.bundle.parse_manifest`, ``E_MEMBER_MISSING``,
            ``E_MEMBER_UNLISTED``, the payload codes of
            :func:`oemkit.verify.payload.stream_payload`; ``E_LINK_INVALID`` (a link
            member that is not named ``links/STEP.KEYID8.link``).
    """
    limits = limits or Limits()
    directory, link_dir = Path(directory), Path(link_dir)
    for folder in (directory, link_dir):
        if any(folder.iterdir()):
            raise InputError("E_DEST_NOT_EMPTY", f"{folder} is not empty",
                             hint="choose an empty folder")
    with open_input(Path(bundle), "bundle") as handle:
        members = scan_bundle(handle, limits)
        by_name = {m.name: m for m in members}
        manifest_bytes = read_member(handle, by_name[MANIFEST])
        manifest = parse_manifest(manifest_bytes)
        _listed_members(by_name, manifest)
        links: list[tuple[str, bytes]] = []
        for member in members:
            if member.name.startswith(LINK_DIR):
                name = member.name[len(LINK_DIR):]
                if not _LINK_NAME.fullmatch(name):
                    raise VerificationError(
                        "E_LINK_INVALID", f"{member.name} is not named as an in-toto link "
                        "(links/STEP.KEYID8.link)", member=member.name, check="in-toto",
                        hint="the bundle was altered; obtain a fresh copy from the vendor")
                links.append((name, read_member(handle, member)))
        try:
            stream_payload(handle, by_name[PAYLOAD], manifest, limits, None,
                           _sink(directory))
            if manifest.entry(MANIFEST) is None:
                _write_new(directory / MANIFEST, manifest_bytes)
            for name, data in links:
                _write_new(link_dir / name, data)
        except OSError as exc:
            raise EnvironmentProblem("E_WRITE", f"cannot write under {directory}: "
                                     f"{exc.strerror or exc}",
                                     hint="check free space and permissions") from exc
    return Extracted(directory, link_dir, tuple(n for n, _ in links), len(manifest.files))


def _sink(root: Path) -> Any:
    """Payload files under ``root`` (paths were checked safe before any byte is written)."""
    def sink(entry: FileEntry) -> BinaryIO:
        parts = entry.path.split("/")
        folder = root
        for part in parts[:-1]:
            folder = folder / part
            folder.mkdir(mode=0o755, exist_ok=True)
        fd = os.open(folder / parts[-1], os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW,
                     entry.mode)
        return os.fdopen(fd, "wb")
    return sink


def _write_new(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "wb") as out:
        out.write(data)


def verify_layout(bundle: Path | str, layout: Path | str | bytes,
                  layout_keys: Sequence[Path | str | bytes], *,
                  limits: Limits | None = None) -> LayoutReport:
    """Verify ``bundle`` against the in-toto ``layout`` signed by ``layout_keys`` with
    in-toto's own ``in_toto_verify``, in a temporary directory holding the bundle's
    payload and manifest (:func:`extract_for_layout`); see the module docstring.

    Raises:
        UsageError: ``E_USAGE`` (no layout key).
        InputError: ``E_LAYOUT_INVALID`` (not an in-toto layout in a DSSE envelope or a
            signed Metablock), ``E_TOO_LARGE``, ``E_NOT_FOUND``, ``E_NOT_A_FILE``;
            ``E_KEY_FORMAT``, ``E_KEY_ALGORITHM`` (a layout key); as
            :func:`extract_for_layout`.
        EnvironmentProblem: ``E_PERMISSION``, ``E_WRITE``.
        VerificationError: ``E_LAYOUT_SIGNATURE``, ``E_LAYOUT_EXPIRED``,
            ``E_LINK_MISSING``, ``E_LINK_UNAUTHORIZED``, ``E_LINK_SIGNATURE``,
            ``E_LINK_INVALID``, ``E_LAYOUT_RULE``, ``E_LAYOUT_INSPECTION``; the bundle
            codes of :func:`extract_for_layout`.
    """
    metadata, keys, name = _load(layout, layout_keys)
    with tempfile.TemporaryDirectory(prefix="oemkit-layout-") as tmp:
        directory, link_dir = Path(tmp) / "bundle", Path(tmp) / "links"
        directory.mkdir()
        link_dir.mkdir()
        extracted = extract_for_layout(bundle, directory, link_dir, limits=limits)
        return _run(metadata, keys, name, directory, link_dir, str(bundle), extracted.files)


def verify_unpacked(directory: Path | str, link_dir: Path | str, layout: Path | str | bytes,
                    layout_keys: Sequence[Path | str | bytes]) -> LayoutReport:
    """:func:`verify_layout` on a verification directory made already (by
    :func:`extract_for_layout`, or by ``oemkit unpack`` plus the manifest and links as
    docs/INTOTO.md shows): in-toto's inspections record ``directory`` as it is.

    Raises:
        UsageError: ``E_USAGE`` (no layout key).
        InputError: ``E_LAYOUT_INVALID``, ``E_TOO_LARGE``, ``E_NOT_FOUND``,
            ``E_NOT_A_FILE``, ``E_KEY_FORMAT``, ``E_KEY_ALGORITHM``.
        EnvironmentProblem: ``E_PERMISSION``.
        VerificationError: as :func:`verify_layout`.
    """
    metadata, keys, name = _load(layout, layout_keys)
    directory = Path(directory)
    files = sum(1 for p in directory.rglob("*") if p.is_file())
    return _run(metadata, keys, name, directory, Path(link_dir), str(directory), files)


def intoto_keyid(public: PublicKey) -> str:
    """The key id in-toto and securesystemslib give ``public``: SHA-256 of
    securesystemslib's canonical JSON (``encode_canonical``: sorted keys, no spaces, only
    ``\\`` and ``"`` escaped) of ``{keytype, scheme, keyval: {public}}``, the public value
    raw hex for Ed25519 and SPKI PEM for ECDSA P-256 (not oemkit's SPKI-digest key id).
    Computed here so that ``oemkit verify`` never imports securesystemslib;
    tests/test_intoto.py checks it against ``SSlibKey.from_crypto``.

    Raises:
        Nothing coded: ``public`` is an oemkit key (Ed25519 or P-256).
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    if isinstance(public, ed25519.Ed25519PublicKey):
        keytype = scheme = "ed25519"
        value = public.public_bytes(serialization.Encoding.Raw,
                                    serialization.PublicFormat.Raw).hex()
    else:
        keytype, scheme = "ecdsa", "ecdsa-sha2-nistp256"
        value = public.public_bytes(serialization.Encoding.PEM,
                                    serialization.PublicFormat.SubjectPublicKeyInfo).decode()

    def text(value: str) -> str:
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'

    data = (f'{{"keytype":{text(keytype)},"keyval":{{"public":{text(value)}}},'
            f'"scheme":{text(scheme)}}}')
    return hashlib.sha256(data.encode("utf-8")).hexdigest()


def intoto_key(public: PublicKey) -> dict[str, Any]:
    """``public`` as the key dict in-toto layouts and ``in_toto_verify`` take (what
    ``in-toto-verify --verification-keys`` makes of the same PEM file).

    Raises:
        Nothing coded: ``public`` is an oemkit key (Ed25519 or P-256).
    """
    from securesystemslib.signer import SSlibKey  # type: ignore[attr-defined]

    key = SSlibKey.from_crypto(public)
    out: dict[str, Any] = key.to_dict()
    out["keyid"] = key.keyid
    return out


# --------------------------------------------------------------------------- internals


def _load(layout: Path | str | bytes, layout_keys: Sequence[Path | str | bytes]
          ) -> tuple[Any, dict[str, dict[str, Any]], str]:
    """The layout's in-toto Metadata, the layout keys as in-toto key dicts, its name."""
    from in_toto.models.metadata import Metadata

    from oemkit.crypto.keys import load_public, load_public_file
    from oemkit.errors import UsageError

    if not layout_keys:
        raise UsageError("E_USAGE", "no --layout-key given: in-toto needs the layout "
                         "owner's public key", hint="oemkit verify BUNDLE --layout root.layout"
                         " --layout-key owner.pub")
    if isinstance(layout, bytes):
        name, data = "<bytes>", layout
    else:
        name, data = str(layout), read_input(Path(layout), "layout", MAX_LAYOUT_BYTES)
    try:
        metadata = Metadata.from_dict(json.loads(data))
        metadata.get_payload().validate()
        if metadata.get_payload().type_ != "layout":
            raise ValueError("it holds a link, not a layout")
    except Exception as exc:  # any in-toto or JSON failure is a bad layout
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError("E_LAYOUT_INVALID", f"{name} is not a signed in-toto layout "
                         f"({detail})", field="layout", hint=_HINT_LAYOUT) from exc
    keys: dict[str, dict[str, Any]] = {}
    for item in layout_keys:
        public = (load_public(item, "layout key") if isinstance(item, bytes)
                  else load_public_file(Path(item)))
        key = intoto_key(public)
        keys[key["keyid"]] = key
    return metadata, keys, name


@contextlib.contextmanager
def _inside(directory: Path) -> Iterator[None]:
    with _CWD_LOCK:
        before = os.getcwd()
        os.chdir(directory)
        try:
            yield
        finally:
            os.chdir(before)


def _run(metadata: Any, keys: dict[str, dict[str, Any]], name: str, directory: Path,
         link_dir: Path, bundle: str, files: int) -> LayoutReport:
    from in_toto import exceptions as ie
    from in_toto import verifylib
    from securesystemslib.exceptions import FormatError as SslibFormatError

    link_dir = link_dir.resolve()
    layout = metadata.get_payload()
    try:
        with _inside(directory):
            verifylib.in_toto_verify(metadata, keys, str(link_dir),
                                     persist_inspection_links=False)
    except ie.SignatureVerificationError as exc:
        raise VerificationError(
            "E_LAYOUT_SIGNATURE", f"{name} is not signed by every layout key given "
            f"({', '.join(k[:16] + '…' for k in sorted(keys))})", check="in-toto layout",
            field="layout", hint="pass the public key of the layout's owner (--layout-key), "
            "or ask your security team to sign the layout again") from exc
    except ie.LayoutExpiredError as exc:
        raise VerificationError(
            "E_LAYOUT_EXPIRED", f"{name} expired at {layout.expires}",
            check="in-toto layout", field="layout", expected=f"before {layout.expires}",
            hint="ask your security team for a current layout (oemkit layout init "
                 "--days N makes a new starter)") from exc
    except ie.LinkNotFoundError as exc:
        raise _no_link(layout, link_dir) from exc
    except ie.ThresholdVerificationError as exc:
        raise _bad_link(layout, link_dir, str(exc)) from exc
    except ie.RuleVerificationError as exc:
        raise _rule_failed(exc, directory, link_dir, layout) from exc
    except ie.BadReturnValueError as exc:
        raise VerificationError(
            "E_LAYOUT_INSPECTION", f"an inspection of {name} failed: {exc}",
            check="in-toto inspection", hint="the inspection's command must exit 0 in the "
            "verification directory; check that it is installed here") from exc
    except (ie.InvalidMetadata, ie.FormatError, SslibFormatError, ValueError,
            KeyError) as exc:
        raise InputError("E_LAYOUT_INVALID", f"{name} cannot be used: "
                         f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}",
                         field="layout", hint=_HINT_LAYOUT) from exc
    # in-toto's own checks for what counted: the validly signed, authorized links.
    counted = verifylib.verify_link_signature_thresholds(
        layout, verifylib.load_links_for_layout(layout, str(link_dir)))
    links = sorted(f"{step}.{keyid[:8]}.link" for step, by_key in counted.items()
                   for keyid in by_key)
    return LayoutReport(
        bundle=bundle, layout=name, expires=str(layout.expires),
        layout_keys=tuple(sorted(keys)), steps=tuple(s.name for s in layout.steps),
        inspections=tuple(i.name for i in layout.inspect), links=tuple(links),
        functionaries=tuple(sorted({k for by_key in counted.values() for k in by_key})),
        files=files)


def _signers(path: Path) -> list[str]:
    """The key ids a link file's signatures claim (unverified; for messages only)."""
    try:
        doc = json.loads(path.read_bytes())
        return [str(s.get("keyid", "")) for s in doc.get("signatures", [])]
    except (OSError, ValueError, AttributeError):
        return []


def _no_link(layout: Any, link_dir: Path) -> VerificationError:
    """``LinkNotFoundError``: no link at all for a step, or only links by other keys."""
    for step in layout.steps:
        authorized = {k[:8] for k in step.pubkeys}
        present = sorted(link_dir.glob(f"{step.name}.*.link"))
        if len([p for p in present if p.name.split(".")[-2] in authorized]) >= step.threshold:
            continue
        names = ", ".join(k[:16] + "…" for k in sorted(step.pubkeys)) or "none"
        if not present:
            return VerificationError(
                "E_LINK_MISSING", f"the bundle carries no in-toto link for step "
                f"'{step.name}' ({LINK_DIR}{step.name}.KEYID8.link); the layout needs "
                f"{step.threshold} signed by: {names}", check="in-toto links",
                hint="ask the vendor for a bundle signed by oemkit with in-toto links "
                     "('oemkit sign BUNDLE --key KEY' adds them to an existing bundle)")
        signers = sorted({k for p in present for k in _signers(p)})
        return VerificationError(
            "E_LINK_UNAUTHORIZED", f"the in-toto link(s) for step '{step.name}' "
            f"({', '.join(p.name for p in present)}) are signed by key(s) "
            f"{', '.join(k[:16] + '…' for k in signers) or 'unknown'}, which the layout does "
            f"not name for that step (it names: {names})", check="in-toto links",
            member=f"{LINK_DIR}{present[0].name}",
            hint="the bundle was signed with another release key than the layout allows: "
                 "ask the vendor which key signs releases and add it to the layout, or get "
                 "a bundle signed with an allowed key")
    return VerificationError("E_LINK_MISSING", "in-toto found too few links for the layout",
                             check="in-toto links", hint="ask the vendor for a bundle "
                             "signed by oemkit with in-toto links")


def _bad_link(layout: Any, link_dir: Path, detail: str) -> VerificationError:
    """``ThresholdVerificationError``: links named for authorized keys, bad signatures."""
    step = next((s for s in layout.steps if f"'{s.name}'" in detail), layout.steps[0])
    present = sorted(p.name for p in link_dir.glob(f"{step.name}.*.link")
                     if p.name.split(".")[-2] in {k[:8] for k in step.pubkeys})
    return VerificationError(
        "E_LINK_SIGNATURE", f"the in-toto link(s) for step '{step.name}' "
        f"({', '.join(present) or 'none'}) are named for keys the layout allows but not "
        f"validly signed by them (the layout needs {step.threshold})",
        check="in-toto links", member=f"{LINK_DIR}{present[0]}" if present else None,
        hint="the link was altered or renamed; obtain a fresh copy of the bundle")


def _rule_failed(exc: Exception, directory: Path, link_dir: Path,
                 layout: Any) -> VerificationError:
    """``RuleVerificationError``, naming the rule, where it is and the artifacts."""
    from in_toto import verifylib

    first = str(exc).splitlines()[0] if str(exc) else ""
    trace = getattr(verifylib, "RULE_TRACE", {})
    where = f"the expected_{trace.get('source_type', '?')} of '{trace.get('source_name', '?')}'"
    match = re.match(r"'(?P<rule>[^']*)' (?:matched the following artifacts: "
                     r"(?P<list>\[.*\])|did not find (?P<required>.*) in: )", first)
    artifacts: list[str] = []
    rule = first
    if match:
        rule = match["rule"]
        if match["list"]:
            with contextlib.suppress(ValueError, SyntaxError):
                artifacts = sorted(str(a) for a in ast.literal_eval(match["list"]))
        elif match["required"]:
            artifacts = [match["required"]]
    if not artifacts:
        return VerificationError("E_LAYOUT_RULE", f"in-toto rule failed in {where}: {first}",
                                 check="in-toto rules", hint=_RULE_HINT)
    expected = actual = None
    products = _products(link_dir, layout)
    detail = ""
    target = directory / artifacts[0]
    if rule.startswith("REQUIRE"):
        detail = f"; {artifacts[0]} is missing"
    elif target.is_file():
        actual = hashlib.sha256(target.read_bytes()).hexdigest()
        expected = products.get(artifacts[0])
        detail = (f"; {artifacts[0]} has SHA-256 {actual}, the signed build link records "
                  f"{expected}" if expected else
                  f"; the signed build link does not record {artifacts[0]}")
    return VerificationError(
        "E_LAYOUT_RULE", f"in-toto rule '{rule}' in {where} failed for "
        f"{', '.join(artifacts)}{detail}", check="in-toto rules", member=artifacts[0],
        expected=expected, actual=actual, hint=_RULE_HINT)


_RULE_HINT = ("the bundle's files are not the ones the signed link records (altered after "
              "the build, or a different build): obtain a fresh copy from the vendor; if the "
              "layout's rules are wrong, ask your security team")


def _products(link_dir: Path, layout: Any) -> dict[str, str]:
    """Path -> SHA-256 of the first step's products, from its link (messages only)."""
    for path in sorted(link_dir.glob(f"{layout.steps[0].name}.*.link")):
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError, AttributeError):
            import base64

            doc = json.loads(path.read_bytes())
            link = json.loads(base64.b64decode(doc["payload"]))
            return {p: d["sha256"] for p, d in link["products"].items()}
    return {}
