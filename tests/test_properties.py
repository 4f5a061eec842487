"""Property tests (hypothesis, bounded): damage never gets past verification, never crashes,
and the canonical forms round-trip.

A damaged copy of a signed bundle, license or trust root must be rejected with an
OemkitError (for a bundle: a report with a coded error), never an uncaught exception. The
formats leave a few bytes unauthenticated on purpose, and damage there may be accepted, but
only as *exactly the same signed content*:

- bundle: the Sigstore wrapper of a signature member (JSON layout, ``publicKey.hint``,
  ``keyid``) is not signed; a tar checksum may be re-spelt (``0012345\\0`` vs ``012345 \\0``);
- license: the armor's line breaks and trailing white space;
- trust root: the envelope's JSON white space and the signatures' ``keyid`` hints.

Each test asserts that when a damaged copy is accepted, what was accepted equals the
original. Example counts are bounded so that the whole file runs in well under a minute.
"""

from __future__ import annotations

import datetime as dt
import json
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from oemkit._canonical import canonical_json, parse_json
from oemkit.crypto.armor import dearmor, parse_document
from oemkit.crypto.dsse import parse_sigstore_bundle
from oemkit.errors import OemkitError
from oemkit.models.manifest import FileEntry, Manifest, MemberDigest, Runtime, path_problem
from oemkit.models.trust import TrustRoot
from oemkit.verify.bundle import verify_open_bundle
from oemkit.verify.license import LICENSE_LABEL, LicenseState, evaluate
from oemkit.verify.trust import check_self_signed, parse_root

CORPUS = Path(__file__).resolve().parent / "hostile" / "corpus"
BUNDLE = (CORPUS / "control-bundle-valid.oemb").read_bytes()
LICENSE = (CORPUS / "control-license-valid.lic").read_bytes()
ROOT_DOC = (CORPUS / "trust-root.json").read_bytes()
ROOT: TrustRoot = parse_root(ROOT_DOC).root
NOW = dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc)
BLOCK = 512

SLOW = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                  HealthCheck.data_too_large])


# --------------------------------------------------------------------------- helpers


def _members(data: bytes) -> list[tuple[str, int, int, int]]:
    """(name, header offset, data offset, size) of each outer member of ``BUNDLE``."""
    out, offset = [], 0
    while data[offset:offset + BLOCK] != bytes(BLOCK):
        header = data[offset:offset + BLOCK]
        size = int(header[124:136].rstrip(b"\0 "), 8)
        out.append((header[:100].split(b"\0", 1)[0].decode(), offset, offset + BLOCK, size))
        offset += BLOCK + size + (-size % BLOCK)
    return out


MEMBERS = _members(BUNDLE)
SIGNATURES = [(d, d + s) for n, _, d, s in MEMBERS if n.startswith("signatures/")]
HEADERS = [h for _, h, _, _ in MEMBERS]


def _verify(data: bytes) -> Any:
    """verify_open_bundle on a real (temporary) file: only coded answers are allowed."""
    with tempfile.TemporaryFile() as handle:
        handle.write(data)
        handle.flush()
        handle.seek(0)
        report = verify_open_bundle(handle, ROOT)
    if not report.ok:
        assert report.error is not None and report.error.code.startswith("E_")
        assert report.error.code != "E_INTERNAL"
    return report


def _octal(field: bytes) -> int | None:
    text = field.rstrip(b"\0 ").lstrip(b" ")
    return int(text, 8) if text and all(48 <= c <= 55 for c in text) else None


def _accepted_bundle_damage_is_harmless(original: bytes, damaged: bytes, pos: int) -> None:
    for start, end in SIGNATURES:
        if start <= pos < end:  # the unsigned Sigstore wrapper: same envelope inside
            assert parse_sigstore_bundle(damaged[start:end], "sig") == parse_sigstore_bundle(
                original[start:end], "sig")
            return
    header = next(h for h in HEADERS if h <= pos < h + BLOCK)
    assert 148 <= pos - header < 156, f"damage at byte {pos} was accepted"
    assert _octal(damaged[header + 148:header + 156]) == _octal(
        original[header + 148:header + 156])


# --------------------------------------------------------------------------- bundle


@settings(max_examples=600, **SLOW)
@given(pos=st.integers(0, len(BUNDLE) - 1), delta=st.integers(1, 255))
def test_bundle_byte_flip_never_passes_and_never_crashes(pos: int, delta: int) -> None:
    damaged = bytearray(BUNDLE)
    damaged[pos] = (damaged[pos] + delta) % 256
    report = _verify(bytes(damaged))
    if report.ok:
        _accepted_bundle_damage_is_harmless(BUNDLE, bytes(damaged), pos)


@settings(max_examples=150, **SLOW)
@given(cut=st.integers(0, len(BUNDLE) - 1))
def test_bundle_truncation_never_passes_and_never_crashes(cut: int) -> None:
    report = _verify(BUNDLE[:cut])
    assert not report.ok
    assert report.error.code in {"E_TRUNCATED", "E_NOT_A_BUNDLE"}, report.error


# --------------------------------------------------------------------------- license


def _evaluate(data: bytes) -> Any:
    try:
        return evaluate(data, ROOT, NOW, state=LicenseState())
    except OemkitError:
        return None


def _same_signed_license(damaged: bytes) -> None:
    ours = parse_document(dearmor(LICENSE, LICENSE_LABEL, "a"), "a")
    theirs = parse_document(dearmor(damaged, LICENSE_LABEL, "b"), "b")
    assert theirs == ours, "a different license was accepted"


@settings(max_examples=500, **SLOW)
@given(pos=st.integers(0, len(LICENSE) - 1), delta=st.integers(1, 255))
def test_license_byte_flip_never_passes_and_never_crashes(pos: int, delta: int) -> None:
    damaged = bytearray(LICENSE)
    damaged[pos] = (damaged[pos] + delta) % 256
    if _evaluate(bytes(damaged)) is not None:
        _same_signed_license(bytes(damaged))


@settings(max_examples=150, **SLOW)
@given(cut=st.integers(0, len(LICENSE) - 1))
def test_license_truncation_never_passes_and_never_crashes(cut: int) -> None:
    if _evaluate(LICENSE[:cut]) is not None:
        _same_signed_license(LICENSE[:cut])


def test_license_control_is_valid() -> None:
    assert evaluate(LICENSE, ROOT, NOW, state=LicenseState()).status == "valid"


# --------------------------------------------------------------------------- trust root


def _root(data: bytes) -> TrustRoot | None:
    try:
        signed = parse_root(data)
        check_self_signed(signed)
    except OemkitError:
        return None
    return signed.root


@settings(max_examples=400, **SLOW)
@given(pos=st.integers(0, len(ROOT_DOC) - 1), delta=st.integers(1, 255))
def test_trust_root_byte_flip_never_passes_and_never_crashes(pos: int, delta: int) -> None:
    damaged = bytearray(ROOT_DOC)
    damaged[pos] = (damaged[pos] + delta) % 256
    root = _root(bytes(damaged))
    if root is not None:
        assert root == ROOT and canonical_json(root.to_dict()) == canonical_json(ROOT.to_dict())


@settings(max_examples=100, **SLOW)
@given(cut=st.integers(0, len(ROOT_DOC) - 1))
def test_trust_root_truncation_never_passes_and_never_crashes(cut: int) -> None:
    root = _root(ROOT_DOC[:cut])
    if root is not None:  # only the trailing newline is optional
        assert cut == len(ROOT_DOC) - 1 and root == ROOT


# --------------------------------------------------------------------------- canonical JSON

SAFE_INT = st.integers(-(2**53 - 1), 2**53 - 1)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | SAFE_INT | st.text(),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(), inner, max_size=5),
    max_leaves=30)


@settings(max_examples=300, **SLOW)
@given(value=JSON_VALUES)
def test_canonical_json_round_trips(value: Any) -> None:
    text = canonical_json(value)
    assert parse_json(text, what="value") == value
    assert canonical_json(parse_json(text, what="value")) == text
    assert canonical_json(json.loads(json.dumps(value))) == text  # any spelling, one form


# --------------------------------------------------------------------------- manifest

COMPONENT = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,20}", fullmatch=True).filter(
    lambda p: path_problem(p) is None)  # no "..", no trailing dot, no CON or NUL
PATHS = st.lists(st.lists(COMPONENT, min_size=1, max_size=3).map("/".join), max_size=8,
                 unique=True)
HEX = st.text("0123456789abcdef", min_size=64, max_size=64)
NAME = st.from_regex(r"[a-z0-9][a-z0-9._-]{0,63}", fullmatch=True)
VERSION = st.from_regex(r"[0-9A-Za-z][0-9A-Za-z.+_-]{0,63}", fullmatch=True)
PROFILE = NAME.filter(lambda n: not n.endswith((".yaml", ".yml")))


def _runtime_sections(paths: list[str]) -> Any:
    """config and golden sections whose paths are files of the manifest (as verify wants)."""
    if not paths:
        return st.none(), st.none()
    path = st.sampled_from(paths)
    version = st.integers(1, 2**53 - 1)
    config = st.none() | st.fixed_dictionaries(
        {"file": path, "schema": path, "version": st.integers(1000, 2000)},
        optional={"migrations": path,
                  "history": st.lists(st.fixed_dictionaries(
                      {"version": version.filter(lambda v: not 1000 <= v <= 2000),
                       "schema": path}, optional={"samples": st.lists(path, max_size=3)}),
                      max_size=3, unique_by=lambda h: h["version"])})
    golden = st.none() | st.fixed_dictionaries(
        {"inputs": path, "outputs": path},
        optional={"atol": st.floats(0, 1, allow_nan=False) | st.integers(0, 10),
                  "rtol": st.floats(0, 1, allow_nan=False)})
    return config, golden


@st.composite
def manifests(draw: Any) -> Manifest:
    # at least one file: the runtime's model must be one of them, as verify requires
    paths = sorted(draw(PATHS), key=lambda p: p.encode("utf-8")) or ["model.onnx"]
    files = tuple(FileEntry(p, draw(st.integers(0, 2**53 - 1)), draw(HEX),
                            draw(st.sampled_from([0o644, 0o755]))) for p in paths)
    members = {name: MemberDigest(draw(HEX), draw(st.integers(0, 2**40)))
               for name in ["sbom.cdx.json", "payload.tar.zst",
                            *draw(st.lists(st.sampled_from(["trust/root-2.json",
                                                             "revocations.crl"]),
                                           unique=True))]}
    config, golden = _runtime_sections(paths)
    runtime = Runtime(  # every path it names is a file of the manifest, as verify requires
        model=draw(st.sampled_from(paths) if paths else st.just("model.onnx")),
        entrypoint=draw(st.none() | st.sampled_from(paths)) if paths else None,
        profiles=tuple(draw(st.lists(PROFILE, max_size=3))),
        config=draw(config), golden=draw(golden))
    return Manifest(name=draw(NAME), version=draw(VERSION),
                    build_time=draw(st.text(max_size=25)),
                    builder={"name": "oemkit", "version": draw(st.text(max_size=10))},
                    runtime=runtime, files=files, members=members,
                    description=draw(st.text(max_size=50)), channel=draw(st.none() | NAME))


@settings(max_examples=200, **SLOW)
@given(manifest=manifests())
def test_manifest_round_trips(manifest: Manifest) -> None:
    again = Manifest.from_dict(manifest.to_dict())
    assert again == manifest
    assert again.to_dict() == manifest.to_dict()
    from_bytes = Manifest.from_dict(parse_json(manifest.to_bytes(), what="manifest"))
    assert from_bytes == manifest and from_bytes.to_bytes() == manifest.to_bytes()
    # to_bytes canonicalises the file list item by item: the same bytes as in one piece
    assert manifest.to_bytes() == canonical_json(manifest.to_dict())


@settings(max_examples=300, **SLOW)
@given(skeleton=st.dictionaries(st.text(max_size=8), JSON_VALUES, max_size=5),
       key=st.text(max_size=8), items=st.lists(JSON_VALUES, max_size=8))
def test_spliced_canonical_json_is_canonical_json(skeleton: dict[str, Any], key: str,
                                                  items: list[Any]) -> None:
    from oemkit._canonical import canonical_json_spliced, splice_marker

    spliced = canonical_json_spliced(dict(skeleton, **{key: splice_marker()}), iter(items))
    assert spliced == canonical_json(dict(skeleton, **{key: items}))


# --------------------------------------------------------------------------- SBOM writer

SBOM_PATHS = st.lists(st.text(st.characters(blacklist_categories=("Cs",)), min_size=1,
                              max_size=30), min_size=1, max_size=12, unique=True)


@settings(max_examples=60, **SLOW)
@given(paths=SBOM_PATHS, model_index=st.integers(0, 11), description=st.text(max_size=20))
def test_sbom_template_path_writes_what_the_library_writes(paths: list[str], model_index: int,
                                                           description: str) -> None:
    """File components are written from a template (no per-file dicts); for any names,
    quotes, control characters and non-ASCII included, the bytes are the library's."""
    from oemkit.release.sbom import make_sbom

    when = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    files = [FileEntry(p, i, f"{i:064x}", 0o644) for i, p in enumerate(paths)]
    model = paths[model_index % len(paths)]
    fast = make_sbom("n", "1.0.0", description, files, model, when)
    assert fast == make_sbom("n", "1.0.0", description, files, model, when, fast=False)
    assert json.loads(fast)["components"]  # and it is JSON


@pytest.mark.parametrize("data", [BUNDLE])
def test_bundle_control_is_valid(data: bytes) -> None:
    assert _verify(data).ok


# --------------------------------------------------------------------------- license state file

STATE_VALUES = st.recursive(
    st.none() | st.booleans() | SAFE_INT | st.text(max_size=30) | st.sampled_from(
        ["oemkit-license-state/v1", "oemkit-license-state/v2", "2026-06-01T00:00:00Z"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["type", "last_seen", "issuers", "root_keys", "crl", "crl_seq",
                         "seqs", "x"]), inner, max_size=6),
    max_leaves=25)


@settings(max_examples=300, **SLOW)
@given(doc=STATE_VALUES, raw=st.booleans(), noise=st.binary(max_size=40))
def test_any_state_file_is_read_or_set_aside_never_a_crash(doc: Any, raw: bool,
                                                           noise: bytes) -> None:
    """The host's state file may be damaged by a crash, a disk or a person: reading it
    gives a state (maybe empty, with a warning), and the next write gives a valid file."""
    from oemkit.host.license_state import load_state, save_state
    from oemkit.verify.license import LicenseState

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "state.json"
        path.write_bytes(noise if raw else json.dumps(doc).encode())
        state, problem = load_state(path, ROOT)
        assert isinstance(state, LicenseState)
        assert problem is None or "license state" in problem
        save_state(path, LicenseState(crl_seq=state.crl_seq + 1), ROOT)
        again, problem = load_state(path, ROOT)
        assert problem is None and again.crl_seq == state.crl_seq + 1
