"""Property tests (hypothesis, bounded) for the readers the outside review found crashing
(issue 13): the unverified bundle readers, the media index of ``join`` and the license
state file. For each, any bytes give either a result or an OemkitError with a stable code,
never another exception (and never ``E_INTERNAL``); what is accepted is consistent.

- unverified readers: ``inspect_bundle``, ``read_member_json`` (SBOM, provenance), the SBOM
  rows and diff, and ``migrate``'s ``bundle_configs`` + ``upgrade_path_test`` + ``plan``
  without ``--trust``, on damaged copies of a bundle that declares a config section, on
  any ``runtime.config`` value, on any SBOM;
- media index: ``read_index`` on damaged real indexes, on any payload (numbers of any
  size included); an accepted index tiles the bundle exactly;
- state file: ``load_state``/``save_state`` and ``oemkit.license.verify()`` after any
  damaged state file: the next write is a valid file, and its monotonic fields (the clock
  reading ``last_seen``, the CRL sequence, the re-issue numbers) never decrease.

fuzz/fuzz_readers.py, fuzz_media.py and fuzz_state.py fuzz the same entry points.
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

import oemkit.license
from helpers import EXAMPLE_CONFIG_FILES as CONFIG_FILES
from helpers import EXAMPLE_CONFIG_SECTION as CONFIG_SECTION
from hostile import make_corpus
from oemkit._canonical import b64decode, canonical_json
from oemkit.errors import OemkitError
from oemkit.host import media, migrate
from oemkit.host.license_state import load_state, save_state
from oemkit.models import config as config_model
from oemkit.models.manifest import PROVENANCE, SBOM
from oemkit.models.trust import TrustRoot
from oemkit.report.sbom import component_rows, read_member_json, sbom_diff
from oemkit.verify.bundle import inspect_bundle
from oemkit.verify.license import LicenseState
from oemkit.verify.trust import parse_root

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO / "tests" / "hostile" / "corpus"
EXAMPLE = REPO / "bundles" / "example"
ROOT_DOC = (CORPUS / "trust-root.json").read_bytes()
ROOT: TrustRoot = parse_root(ROOT_DOC).root
LICENSE = (CORPUS / "control-license-valid.lic").read_bytes()
CRL = (CORPUS / "control-crl-valid.crl").read_bytes()
NOW = dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc)
HOST = {"machine-id": ["0123456789abcdef"], "mac": ["00:11:22:33:44:55"]}

SLOW = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                  HealthCheck.data_too_large,
                                                  HealthCheck.function_scoped_fixture])

SAFE_INT = st.integers(-(2**53 - 1), 2**53 - 1)
#: Numbers as JSON text, of any size: 1e400, 400 digits, -0, 1.5e-9999 ...
BIG_NUMBERS = st.from_regex(r"-?[0-9]{1,450}(\.[0-9]{1,20})?([eE][+-]?[0-9]{1,5})?",
                            fullmatch=True)


def _coded(exc: OemkitError) -> None:
    assert exc.code.startswith("E_") and exc.code != "E_INTERNAL", exc
    assert exc.message, exc


def _answer(fn: Any, *args: Any, **kw: Any) -> Any:
    """``fn``'s result, or None after a coded OemkitError; anything else propagates."""
    try:
        return fn(*args, **kw)
    except OemkitError as exc:
        _coded(exc)
        return None


# --------------------------------------------------------------------------- unverified readers

FORGE = make_corpus.Forge(make_corpus.load_keys())
FILES = sorted([*make_corpus.FILES, *((p, (EXAMPLE / p).read_bytes(), 0o644)
                                      for p in CONFIG_FILES)], key=lambda f: f[0].encode())


def _config_bundle(section: Any = CONFIG_SECTION, **kw: Any) -> bytes:
    def edit(doc: dict[str, Any]) -> None:
        doc["runtime"]["config"] = section

    return bytes(make_corpus.outer(FORGE.parts(FILES, manifest_edit=edit, **kw)))


CONFIG_BUNDLE = _config_bundle()
CONTROL_SBOM = json.loads(dict(FORGE.parts())["sbom.cdx.json"])


def _configs(path: Path) -> config_model.BundleConfigs:
    configs = migrate.bundle_configs(path)
    assert configs.verified is False
    config_model.upgrade_path_test(configs)
    for version in sorted(configs.samples):
        for name, sample in configs.samples[version]:
            config_model.plan(sample, configs, name)
    return configs


def _all_readers(data: bytes) -> dict[str, Any]:
    """Every unverified reader on ``data`` as a bundle file: result or None (coded error)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "b.oemb"
        path.write_bytes(data)
        out = {"inspect": _answer(inspect_bundle, path),
               "sbom": _answer(read_member_json, path, SBOM),
               "provenance": _answer(read_member_json, path, PROVENANCE),
               "configs": _answer(_configs, path)}
    if out["inspect"] is not None:
        assert out["inspect"].verified is False
    for key in ("sbom", "provenance"):
        if out[key] is not None:
            assert out[key].verified is False and isinstance(out[key].doc, dict)
            if key == "sbom":
                component_rows(out[key].doc)
                sbom_diff(out[key].doc, CONTROL_SBOM)
    return out


def test_config_bundle_control_is_read_by_every_reader() -> None:
    out = _all_readers(CONFIG_BUNDLE)
    assert all(v is not None for v in out.values()), out
    assert out["configs"].version == 2 and sorted(out["configs"].samples) == [1]
    assert out["inspect"].to_dict()["manifest"]["runtime"]["config"] == CONFIG_SECTION


@settings(max_examples=150, **SLOW)
@given(pos=st.integers(0, len(CONFIG_BUNDLE) - 1), delta=st.integers(1, 255))
def test_unverified_readers_byte_flip_never_crash(pos: int, delta: int) -> None:
    damaged = bytearray(CONFIG_BUNDLE)
    damaged[pos] = (damaged[pos] + delta) % 256
    _all_readers(bytes(damaged))


@settings(max_examples=60, **SLOW)
@given(cut=st.integers(0, len(CONFIG_BUNDLE) - 1))
def test_unverified_readers_truncation_never_crash(cut: int) -> None:
    out = _all_readers(CONFIG_BUNDLE[:cut])
    assert out["inspect"] is None  # a cut bundle has no end-of-archive: never read as whole


@settings(max_examples=60, **SLOW)
@given(start=st.integers(0, len(CONFIG_BUNDLE) - 1), noise=st.binary(min_size=1, max_size=64))
def test_unverified_readers_overwritten_range_never_crash(start: int, noise: bytes) -> None:
    damaged = bytearray(CONFIG_BUNDLE)
    damaged[start:start + len(noise)] = noise
    _all_readers(bytes(damaged[:len(CONFIG_BUNDLE)]))


SECTION_KEYS = st.sampled_from(["file", "schema", "version", "history", "migrations",
                                "samples", "x"])
PAYLOAD_PATHS = st.sampled_from([*CONFIG_FILES, "model/model.onnx", "missing.json", "", "..",
                                 "/etc/passwd", "config"])
SECTION_VALUES = st.recursive(
    st.none() | st.booleans() | SAFE_INT | st.floats(allow_nan=False, allow_infinity=False)
    | PAYLOAD_PATHS | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(SECTION_KEYS, inner,
                                                                max_size=6),
    max_leaves=20)


@st.composite
def config_sections(draw: Any) -> Any:
    """Any JSON value, or the real section with one field replaced by any value."""
    if draw(st.booleans()):
        return draw(SECTION_VALUES)
    section = json.loads(json.dumps(CONFIG_SECTION))
    key = draw(st.sampled_from(["file", "schema", "version", "history", "migrations"]))
    section[key] = draw(SECTION_VALUES)
    if draw(st.booleans()):
        section["history"] = [draw(st.dictionaries(SECTION_KEYS, SECTION_VALUES, max_size=4))]
    return section


@settings(max_examples=150, **SLOW)
@given(section=config_sections())
def test_unverified_readers_any_config_section(section: Any) -> None:
    """The review's example: a malformed ``runtime.config`` (KeyError/TypeError in
    ``migrate plan``/``test``). Signed or not, it is a coded error or a sound config set."""
    out = _all_readers(_config_bundle(section))
    if out["configs"] is not None:
        configs = out["configs"]
        assert isinstance(configs.version, int) and configs.version in configs.schemas


@settings(max_examples=60, **SLOW)
@given(files=st.dictionaries(st.sampled_from(CONFIG_FILES),
                             st.binary(max_size=80) | BIG_NUMBERS.map(str.encode),
                             min_size=1, max_size=3))
def test_unverified_configs_any_config_file_bytes(files: dict[str, bytes]) -> None:
    """Schemas, samples, migrations and the default config as any bytes: coded errors."""
    damaged = [(p, files.get(p, d), m) for p, d, m in FILES]

    def edit(doc: dict[str, Any]) -> None:
        doc["runtime"]["config"] = CONFIG_SECTION

    _all_readers(bytes(make_corpus.outer(FORGE.parts(damaged, manifest_edit=edit))))


SBOM_VALUES = st.recursive(
    st.none() | st.booleans() | SAFE_INT | st.text(max_size=10) | st.sampled_from(
        ["CycloneDX", "1.6", "SHA-256", "library", "file"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(
        ["bomFormat", "specVersion", "components", "hashes", "alg", "content", "type", "name",
         "version", "purl", "x"]), inner, max_size=6),
    max_leaves=25)


@settings(max_examples=100, **SLOW)
@given(old=SBOM_VALUES, new=SBOM_VALUES)
def test_sbom_rows_and_diff_take_any_json_value(old: Any, new: Any) -> None:
    """The pure functions behind ``sbom`` and ``sbom diff`` tolerate any JSON value."""
    for doc in (old, new):
        rows = component_rows(doc)
        assert all(set(r) == {"type", "name", "version", "purl", "sha256"} for r in rows)
    diff = sbom_diff(old, new)
    assert set(diff) == {"added", "removed", "changed"}
    assert sbom_diff(new, old)["added"] == diff["removed"]
    assert sbom_diff(old, old) == {"added": [], "removed": [], "changed": []}


@settings(max_examples=80, **SLOW)
@given(doc=SBOM_VALUES, raw=st.binary(max_size=60), use_raw=st.booleans())
def test_unverified_sbom_member_any_content(doc: Any, raw: bytes, use_raw: bool) -> None:
    sbom = raw if use_raw else canonical_json(doc)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "b.oemb"
        path.write_bytes(bytes(make_corpus.outer(FORGE.parts(sbom=sbom))))
        got = _answer(read_member_json, path, SBOM)
    if got is not None:  # only a CycloneDX 1.6 object valid against the schema
        assert got.doc["bomFormat"] == "CycloneDX" and got.doc["specVersion"] == "1.6"
        component_rows(got.doc)


# --------------------------------------------------------------------------- media index

_MEDIA: dict[str, Any] = {}


def _split() -> dict[str, Any]:
    """The control bundle split once (part size 4096) unsigned and signed; deterministic."""
    if not _MEDIA:
        with tempfile.TemporaryDirectory() as tmp:
            source = Path(tmp) / "hostile-1.0.0.oemb"
            source.write_bytes((CORPUS / "control-bundle-valid.oemb").read_bytes())
            unsigned = media.split_bundle(source, 4096, Path(tmp) / "u")
            signed = media.split_bundle(source, 4096, Path(tmp) / "s",
                                        keys=[make_corpus.load_keys()["bundle"]])
            _MEDIA.update(index=unsigned.index.read_bytes(),
                          signed=signed.index.read_bytes(),
                          count=len(unsigned.parts), size=source.stat().st_size)
        _MEDIA["payload"] = json.loads(b64decode(json.loads(_MEDIA["index"])["payload"],
                                                 what="index"))
    return _MEDIA


def _read_index(data: bytes) -> media.LoadedIndex | None:
    loaded = _answer(media.read_index, data, ROOT, what="fuzz.index.json")
    if loaded is not None:  # accepted: the parts tile the bundle exactly, in order
        idx = loaded.index
        assert [p.number for p in idx.parts] == list(range(1, len(idx.parts) + 1))
        assert sum(p.length for p in idx.parts) == idx.bundle_size
        assert all(p.size == p.length + media.HEADER_SIZE <= idx.part_size
                   for p in idx.parts)
    return loaded


def test_media_controls_are_read() -> None:
    split = _split()
    for data, signers in ((split["index"], 0), (split["signed"], 1)):
        loaded = _read_index(data)
        assert loaded is not None and len(loaded.signers) == signers
        assert len(loaded.index.parts) == split["count"] >= 2


@settings(max_examples=200, **SLOW)
@given(which=st.booleans(), pos=st.integers(0, 10**6), delta=st.integers(1, 255))
def test_media_index_byte_flip_never_crashes(which: bool, pos: int, delta: int) -> None:
    original = _split()["signed" if which else "index"]
    damaged = bytearray(original)
    damaged[pos % len(damaged)] = (damaged[pos % len(damaged)] + delta) % 256
    loaded = _read_index(bytes(damaged))
    if loaded is not None and which:  # a signed index: what was accepted is what was signed
        assert loaded.index == media.read_index(original, ROOT).index


@settings(max_examples=60, **SLOW)
@given(which=st.booleans(), cut=st.integers(0, 10**6))
def test_media_index_truncation_never_crashes(which: bool, cut: int) -> None:
    original = _split()["signed" if which else "index"]
    _read_index(original[:cut % len(original)])


INDEX_FIELDS = ["type", "version", "header_size", "part_size", "bundle", "parts",
                "bundle.file", "bundle.size", "bundle.sha256", "bundle.name",
                "parts.0", "parts.0.number", "parts.0.offset", "parts.0.length",
                "parts.0.size", "parts.0.file", "parts.1.offset"]
INDEX_VALUES = st.recursive(
    st.none() | st.booleans() | SAFE_INT | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                max_size=3),
    max_leaves=10)


@settings(max_examples=200, **SLOW)
@given(field=st.sampled_from(INDEX_FIELDS), value=INDEX_VALUES, big=BIG_NUMBERS,
       use_big=st.booleans(), signed=st.booleans())
def test_media_index_any_field_value(field: str, value: Any, big: str, use_big: bool,
                                     signed: bool) -> None:
    """The real index payload with one field replaced by any value (numbers of any size
    written as JSON text, e.g. 1e400), unsigned or signed by the trusted bundle key."""
    doc = json.loads(json.dumps(_split()["payload"]))
    *path, last = field.split(".")
    node = doc
    for part in path:
        node = node[int(part)] if isinstance(node, list) else node[part]
    marker = "\x00FUZZ\x00"
    if isinstance(node, list):
        node[int(last)] = marker
    else:
        node[last] = marker
    payload = json.dumps(doc, sort_keys=True, separators=(",", ":")).replace(
        json.dumps(marker), big if use_big else json.dumps(value)).encode()
    keys = [make_corpus.load_keys()["bundle"]] if signed else []
    _read_index(media._envelope(payload, keys))


@settings(max_examples=100, **SLOW)
@given(raw=st.binary(max_size=200))
def test_media_index_any_bytes(raw: bytes) -> None:
    assert _read_index(raw) is None  # noise is never an index (and never a crash)


@settings(max_examples=40, **SLOW)
@given(part=st.integers(0, 2), pos=st.integers(0, 10**6), delta=st.integers(1, 255),
       cut=st.booleans())
def test_join_with_a_damaged_part_never_publishes_another_bundle(part: int, pos: int,
                                                                  delta: int,
                                                                  cut: bool) -> None:
    """``join`` with one part damaged (a changed byte, or cut short): a coded error and
    no output, or, where the damage misses everything checked, the very bundle split."""
    original = (CORPUS / "control-bundle-valid.oemb").read_bytes()
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "hostile-1.0.0.oemb"
        source.write_bytes(original)
        split = media.split_bundle(source, 4096, Path(tmp) / "parts")
        victim = split.parts[part % len(split.parts)]
        data = bytearray(victim.read_bytes())
        if cut:
            del data[pos % len(data):]
        else:
            data[pos % len(data)] = (data[pos % len(data)] + delta) % 256
        victim.write_bytes(bytes(data))
        out = Path(tmp) / "out" / "joined.oemb"
        result = _answer(media.join_parts, [split.index, *split.parts], ROOT_DOC, out=out)
        if result is None or not result.report.ok:
            assert not out.exists()
        else:
            assert out.read_bytes() == original
        assert not media.work_dir_for(out).exists() or result is None


# --------------------------------------------------------------------------- state file

STATE_KEYS = st.sampled_from(["type", "last_seen", "issuers", "root_keys", "crl", "crl_seq",
                              "seqs", "acme-vision", "x"])
STATE_LEAVES = (st.none() | st.booleans() | SAFE_INT | st.text(max_size=20)
                | st.sampled_from(["oemkit-license-state/v1", "oemkit-license-state/v2",
                                   "2029-06-01T00:00:00Z", "2031-01-01T00:00:00Z",
                                   "9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00",
                                   "1e400", "Infinity"]))
STATE_VALUES = st.recursive(
    STATE_LEAVES, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        STATE_KEYS, inner, max_size=6), max_leaves=25)


@st.composite
def damaged_states(draw: Any) -> bytes:
    """Bytes for a state file: noise, any JSON, a real v2/v1 file with one value replaced
    (raw JSON text: 1e400, Infinity, 400 digits, deep nesting)."""
    kind = draw(st.integers(0, 3))
    if kind == 0:
        return bytes(draw(st.binary(max_size=60)))
    if kind == 1:
        return json.dumps(draw(STATE_VALUES)).encode()
    if kind == 2:
        depth = draw(st.integers(1, 5000))
        return ('{"type": "oemkit-license-state/v2", "issuers": ' + "[" * depth + "]" * depth
                + "}").encode()
    v1 = draw(st.booleans())
    doc: dict[str, Any] = ({"type": "oemkit-license-state/v1",
                            "last_seen": "2029-06-01T00:00:00Z", "crl": None, "crl_seq": 3,
                            "seqs": {"acme-vision": 1}} if v1 else
                           {"type": "oemkit-license-state/v2",
                            "last_seen": "2029-06-01T00:00:00Z",
                            "issuers": [{"root_keys": [], "crl": None, "crl_seq": 3,
                                         "seqs": {"acme-vision": 1}}]})
    target = doc if v1 else doc["issuers"][0]
    key = draw(st.sampled_from(["type", "last_seen", "crl", "crl_seq", "seqs", "issuers",
                                "root_keys"]))
    holder = doc if key in ("type", "last_seen", "issuers") else target
    holder[key] = "\x00FUZZ\x00"
    raw = draw(st.sampled_from(["1e400", "-1e400", "Infinity", "NaN", "9" * 400, "-1",
                                "1.5", "true", '"x"', "[]", "{}"]) | BIG_NUMBERS
               | STATE_VALUES.map(json.dumps))
    return json.dumps(doc).replace(json.dumps("\x00FUZZ\x00"), raw).encode()


def _fields(state: LicenseState) -> tuple[Any, int, dict[str, int]]:
    return state.last_seen, state.crl_seq, dict(state.seqs)


def _not_below(new: LicenseState, floor: tuple[Any, int, dict[str, int]]) -> None:
    last_seen, crl_seq, seqs = floor
    if last_seen is not None:
        assert new.last_seen is not None and new.last_seen >= last_seen, (new, floor)
    assert new.crl_seq >= crl_seq, (new, floor)
    assert all(new.seqs.get(k, -1) >= v for k, v in seqs.items()), (new, floor)


@settings(max_examples=150, **SLOW)
@given(data=damaged_states())
def test_any_state_file_load_save_round_trip(data: bytes) -> None:
    """``load_state`` of any bytes gives a state (maybe empty, with a warning) or a coded
    error; saving what was read gives a file that reads back as exactly that."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "state.json"
        path.write_bytes(data)
        got = _answer(load_state, path, ROOT)
        if got is None:
            return
        state, problem = got
        assert isinstance(state, LicenseState)
        assert problem is None or "license state" in problem
        _answer(save_state, path, state, ROOT)
        again, problem = load_state(path, ROOT)
        assert problem is None, problem
        assert _fields(again) == _fields(state)


@settings(max_examples=100, **SLOW)
@given(data=damaged_states(), days=st.lists(st.integers(-800, 800), min_size=1, max_size=3),
       crl=st.lists(st.booleans(), min_size=3, max_size=3))
def test_after_any_damaged_state_the_next_write_is_valid_and_monotonic(
        data: bytes, days: list[int], crl: list[bool]) -> None:
    """Through ``oemkit.license.verify()``: judge the control license with a damaged state
    file, then again at other times (the clock may go back). Every verdict leaves a valid
    state file; ``last_seen``, the CRL sequence and the re-issue numbers never decrease,
    from what the damaged file held (where it could be read) to every later write."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "state.json"
        peek = Path(tmp) / "peek.json"
        peek.write_bytes(data)
        read = _answer(load_state, peek, ROOT)  # what the damaged file holds, if anything
        floor = _fields(read[0]) if read is not None and read[1] is None else (None, 0, {})
        path.write_bytes(data)
        for offset, with_crl in zip(days, crl, strict=False):
            before = path.read_bytes() if path.is_file() else None
            verdict = _answer(oemkit.license.verify, LICENSE, ROOT, state=path,
                              crl=[CRL] if with_crl else (),
                              now=NOW + dt.timedelta(days=offset), host=HOST)
            if verdict is None and (not path.is_file() or path.read_bytes() == before):
                continue  # refused and nothing written: nothing to check
            state, problem = load_state(path, ROOT)
            assert problem is None, f"the state written is not valid: {problem}"
            _not_below(state, floor)
            if verdict is not None:
                assert state.last_seen is not None and state.last_seen >= NOW + dt.timedelta(
                    days=offset)
                if with_crl:
                    assert state.crl is not None and state.crl_seq >= 1
            floor = _fields(state)


@pytest.mark.parametrize("layout", ["directory", "parent-is-a-file"])
def test_state_path_that_cannot_be_a_file_is_a_coded_error(tmp_path: Path,
                                                           layout: str) -> None:
    """The review's example: a state path that is a directory (the verdict was printed,
    then the write crashed) or whose parent is a file: a coded error, or a verdict that
    says the state could not be kept; never a traceback."""
    if layout == "directory":
        path = tmp_path / "state.json"
        path.mkdir()
    else:
        (tmp_path / "parent").write_text("x")
        path = tmp_path / "parent" / "state.json"
    verdict = _answer(oemkit.license.verify, LICENSE, ROOT, state=path, now=NOW, host=HOST)
    if verdict is not None:
        assert any(str(path) in w and "state" in w for w in verdict.warnings), verdict
