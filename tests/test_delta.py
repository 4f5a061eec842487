"""Delta updates (issue 18): `oemkit delta`, `oemkit patch`, `oemkit upgrade --delta`.

Every rebuilt bundle is compared with NEW byte for byte; every refusal with its code, the
file it names and an output folder left as it was.
"""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from helpers import REPO
from oemkit._canonical import canonical_json
from oemkit.cli import app
from oemkit.errors import FormatError
from oemkit.models.delta import DeltaHeader
from oemkit.release import delta as delta_mod
from oemkit.release.bundle import build_bundle
from oemkit.release.delta import compress, make_delta
from oemkit.release.patch import open_delta, patch_bundle
from oemkit.release.sign import sign_bundle

runner = CliRunner()
EPOCH = 1_790_000_000


def cli(*args):
    result = runner.invoke(app, [str(a) for a in args])
    assert "Traceback" not in result.output, result.output
    return result


def _build(spec_dir: Path, out: Path, keys) -> Path:
    path = build_bundle(spec_dir / "bundle.yaml", out, source_date_epoch_override=EPOCH).path
    sign_bundle(path, [keys["bundle"]])
    return path


def _release(tmp: Path, name: str, version: str, edit=None) -> Path:
    """A copy of the example spec at ``version``, changed by ``edit(folder)``."""
    folder = tmp / name
    shutil.copytree(REPO / "bundles" / "example", folder)
    spec = folder / "bundle.yaml"
    spec.write_text(spec.read_text().replace("version: 0.2.0", f"version: {version}"))
    if edit is not None:
        edit(folder)
    return folder


def _edit_runner_and_add_file(folder: Path) -> None:
    main = folder / "runtime" / "main.py"
    main.write_text(main.read_text().replace("def ", "def  ", 1) + "\n# 0.3.0: tuned\n")
    (folder / "labels.txt").write_text("a\nb\nc\n" * 50)
    spec = folder / "bundle.yaml"
    spec.write_text(spec.read_text().replace("files: []", "files: [labels.txt]"))


@pytest.fixture(scope="module")
def pair(tmp_path_factory, keys):
    """OLD: the example at 0.2.0; NEW: 0.3.0 with the runner edited and a file added."""
    tmp = tmp_path_factory.mktemp("delta")
    old = _build(_release(tmp, "old", "0.2.0"), tmp / "dist-old", keys)
    new = _build(_release(tmp, "new", "0.3.0", _edit_runner_and_add_file), tmp / "dist-new",
                 keys)
    return old, new


def _files(doc: dict) -> dict[str, str]:
    return {f["path"]: f["op"] for f in doc["files"]}


def test_delta_then_patch_rebuilds_new_byte_for_byte(pair, trust_file, tmp_path):
    old, new = pair
    out = tmp_path / "new.oemd"
    made = cli("delta", old, new, "--out", out, "--json")
    assert made.exit_code == 0, made.output
    doc = json.loads(made.stdout)
    ops = _files(doc)
    assert ops["runtime/main.py"] == "patched" and ops["labels.txt"] == "whole"
    assert ops["model/model.onnx"] == "reused" and ops["config/config.json"] == "reused"
    assert doc["size"] == out.stat().st_size < new.stat().st_size
    patched = next(f for f in doc["files"] if f["path"] == "runtime/main.py")
    assert 0 < patched["cost"] < patched["size"] // 4  # a patch, not the file again
    rebuilt = tmp_path / "rebuilt.oemb"
    result = cli("patch", old, out, "--out", rebuilt, "--trust", trust_file, "--json")
    assert result.exit_code == 0, result.output
    assert rebuilt.read_bytes() == new.read_bytes()
    assert json.loads(result.stdout)["verify"]["ok"] is True


def test_explain_writes_nothing_and_agrees_with_the_delta(pair, tmp_path):
    old, new = pair
    before = set(tmp_path.iterdir())
    explained = cli("delta", old, new, "--explain", "--json")
    assert explained.exit_code == 0, explained.output
    assert set(tmp_path.iterdir()) == before
    written = cli("delta", old, new, "--out", tmp_path / "d.oemd", "--json")
    a, b = json.loads(explained.stdout), json.loads(written.stdout)
    assert a["files"] == b["files"] and a["members"] == b["members"] and a["size"] == b["size"]
    table = cli("delta", old, new, "--explain")
    assert "runtime/main.py" in table.output and "patched" in table.output
    assert "reused" in table.output and "whole" in table.output


def _no_litter(folder: Path, keep: set[str]) -> None:
    assert {p.name for p in folder.iterdir()} == keep


def test_a_delta_applied_to_the_wrong_old_is_refused(pair, trust_file, tmp_path):
    old, new = pair
    delta = tmp_path / "new.oemd"
    make_delta(old, new, delta)
    result = cli("patch", new, delta, "--out", tmp_path / "x.oemb", "--trust", trust_file)
    assert result.exit_code == 1
    assert "E_DELTA_BASE" in result.output
    assert "turns example 0.2.0 into example 0.3.0" in result.output
    _no_litter(tmp_path, {"new.oemd", "trust-root.json"})


def _read(delta: Path, old: Path) -> tuple[dict, bytearray, list[bytes]]:
    """A delta's header (decoded with OLD's manifest), data and signatures."""
    from oemkit.release.delta import open_bundle

    with open_bundle(old, "OLD") as bundle:
        manifest = bundle.manifest_bytes
    with open_delta(delta) as opened:
        opened.decode(manifest)
        opened.handle.seek(opened.data_offset)
        return (json.loads(opened.header_bytes), bytearray(opened.handle.read()),
                [raw for _, raw in opened.signatures])


def _write(delta: Path, old: Path, doc: dict, data: bytes, signatures=()) -> None:
    from oemkit.release.delta import container_front, open_bundle

    with open_bundle(old, "OLD") as bundle:
        manifest = bundle.manifest_bytes
    header = DeltaHeader.from_dict(doc)
    packed = compress(canonical_json(doc), manifest, 19)
    front = container_front(canonical_json(header.preamble()), packed, list(signatures),
                            len(data))
    delta.write_bytes(front + bytes(data))


def _rewrite(delta: Path, old: Path, data_fn) -> None:
    """Write ``delta`` again (unsigned) with its header and data changed by data_fn."""
    doc, data, _ = _read(delta, old)
    data_fn(doc, data)
    _write(delta, old, doc, data)


def _frame_of(doc: dict, old: Path, path: str) -> dict:
    """The first frame of NEW payload file ``path`` (recipes are in NEW's manifest order)."""
    from oemkit.release.delta import open_bundle

    with open_bundle(_new_of(old), "NEW") as bundle:
        paths = [f.path for f in bundle.manifest.files]
    recipe = doc["files"][paths.index(path)]
    return next(p for p in recipe["pieces"] if p["op"] == "zstd")


def _new_of(old: Path) -> Path:
    return next((old.parent.parent / "dist-new").glob("*.oemb"))


def test_a_tampered_patch_names_the_file_and_writes_nothing(pair, trust_file, tmp_path):
    old, new = pair
    delta = tmp_path / "new.oemd"
    make_delta(old, new, delta)

    def flip(doc, data):
        frame = _frame_of(doc, old, "runtime/main.py")
        data[frame["data"] + frame["clen"] // 2] ^= 0x40

    _rewrite(delta, old, flip)
    result = cli("patch", old, delta, "--out", tmp_path / "x.oemb", "--trust", trust_file,
                 "--json")
    assert result.exit_code == 1
    error = json.loads(result.stdout)["error"]
    assert error["code"] in ("E_DELTA_CORRUPT", "E_DELTA_RESULT")
    assert error["member"] == "runtime/main.py"
    _no_litter(tmp_path, {"new.oemd", "trust-root.json"})


def test_a_truncated_delta_is_refused(pair, trust_file, tmp_path):
    old, new = pair
    delta = tmp_path / "new.oemd"
    make_delta(old, new, delta)
    data = delta.read_bytes()
    delta.write_bytes(data[: len(data) // 2])
    result = cli("patch", old, delta, "--out", tmp_path / "x.oemb", "--trust", trust_file)
    assert result.exit_code == 1
    assert "E_TRUNCATED" in result.output and f"delta {delta} is truncated" in result.output
    _no_litter(tmp_path, {"new.oemd", "trust-root.json"})


def test_a_result_that_does_not_match_the_signed_manifest_is_refused(pair, trust_file,
                                                                     tmp_path):
    """An unsigned delta rewritten consistently (recipes and digests agree) to make a NEW
    whose manifest says something else: the signed provenance refuses it."""
    old, new = pair
    delta = tmp_path / "new.oemd"
    make_delta(old, new, delta)
    from helpers import read_members
    from oemkit._canonical import sha256_hex

    members = dict(read_members(new))
    forged = members["oemkit-bundle.json"].replace(b'"0.3.0"', b'"0.3.1"')

    def forge(doc, data):
        recipe = next(m for m in doc["members"] if m["name"] == "oemkit-bundle.json")
        frame = compress(forged, b"", 19)
        recipe["pieces"] = [{"op": "zstd", "data": len(data), "clen": len(frame),
                             "len": len(forged), "dict": []}]
        recipe["size"], recipe["sha256"] = len(forged), sha256_hex(forged)
        data.extend(frame)
        doc["data"]["size"] = len(data)
        doc["data"]["sha256"] = sha256_hex(bytes(data))

    _rewrite(delta, old, forge)
    result = cli("patch", old, delta, "--out", tmp_path / "x.oemb", "--trust", trust_file,
                 "--json")
    assert result.exit_code == 1
    error = json.loads(result.stdout)["error"]
    assert error["code"] == "E_DELTA_RESULT"  # the whole file is not the NEW it names
    _no_litter(tmp_path, {"new.oemd", "trust-root.json"})


def test_a_rebuilt_bundle_that_fails_verification_is_not_written(pair, trust_file, tmp_path,
                                                                 monkeypatch):
    """Past the delta's own checks, the full verifier still has the last word."""
    old, new = pair
    delta = tmp_path / "new.oemd"
    make_delta(old, new, delta)
    from oemkit.release import patch as patch_mod

    class Refused:
        ok = False
        error = __import__("oemkit.errors").errors.VerificationError(
            "E_SIGNATURE_INVALID", "no trusted signature")

    monkeypatch.setattr("oemkit.verify.bundle.verify_open_bundle",
                        lambda *a, **k: Refused())
    with pytest.raises(patch_mod.VerificationError) as caught:
        patch_bundle(old, delta, tmp_path / "x.oemb", trust_file)
    assert caught.value.code == "E_SIGNATURE_INVALID"
    assert "rebuilt from the delta does not verify" in caught.value.message
    _no_litter(tmp_path, {"new.oemd", "trust-root.json"})


def test_signed_deltas(pair, trust_file, keys, tmp_path, monkeypatch):
    from helpers import PASSPHRASE

    monkeypatch.setenv("OEMKIT_KEY_PASSPHRASE", PASSPHRASE.decode())
    old, new = pair
    delta = tmp_path / "new.oemd"
    made = cli("delta", old, new, "--out", delta, "--key", REPO / "keys-example" / "bundle.key",
               "--json")
    assert made.exit_code == 0, made.output
    assert json.loads(made.stdout)["signers"] == [keys["bundle"].keyid]
    ok = cli("patch", old, delta, "--out", tmp_path / "a.oemb", "--trust", trust_file,
             "--json")
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["delta_signers"] == [keys["bundle"].keyid]
    # Signed by a key the root does not give the bundle usage: refused before any work.
    other = tmp_path / "other.oemd"
    make_delta(old, new, other, keys=[keys["license"]])
    refused = cli("patch", old, other, "--out", tmp_path / "b.oemb", "--trust", trust_file)
    assert refused.exit_code == 1 and "E_DELTA_SIGNATURE" in refused.output
    assert "signed, but by no bundle key of trust root v2" in refused.output
    # A signed header changed afterwards: the signature no longer verifies.
    signed = delta.read_bytes()
    doc, data, sigs = _read(delta, old)
    doc["compressor"]["level"] = 4
    _write(delta, old, doc, data, sigs)
    assert delta.read_bytes() != signed
    tampered = cli("patch", old, delta, "--out", tmp_path / "c.oemb", "--trust", trust_file)
    assert tampered.exit_code == 1 and "E_DELTA_SIGNATURE" in tampered.output
    assert "does not verify over its header" in tampered.output


def test_another_libzstd_is_named(pair, trust_file, tmp_path, monkeypatch):
    """Every file right, other archive bytes: the compressor is the reason, and said so."""
    old, new = pair
    delta = tmp_path / "new.oemd"
    make_delta(old, new, delta)
    monkeypatch.setattr("oemkit.release.bundle.ZSTD_LEVEL", 4)
    with pytest.raises(Exception) as caught:
        patch_bundle(old, delta, tmp_path / "x.oemb", trust_file)
    assert getattr(caught.value, "code", None) == "E_DELTA_COMPRESSOR"
    assert "install zstandard==" in caught.value.hint
    _no_litter(tmp_path, {"new.oemd", "trust-root.json"})


# --------------------------------------------------------------------------- large files


def _onnx(path: Path, tensors: list[tuple[str, bytes]]) -> None:
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    inits = [numpy_helper.from_array(np.frombuffer(raw, np.float32), name)
             for name, raw in tensors]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y],
                              initializer=inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


@pytest.fixture
def small_windows(monkeypatch):
    """The large-file path at test sizes: files over 64 KiB are compared region by region
    in 4 KiB blocks, in windows of 32 KiB."""
    monkeypatch.setattr(delta_mod, "SMALL", 64 << 10)
    monkeypatch.setattr(delta_mod, "WINDOW", 32 << 10)
    monkeypatch.setattr(delta_mod, "COMPARE", 4 << 10)
    monkeypatch.setattr(delta_mod, "SLACK", 1 << 10)
    monkeypatch.setattr(delta_mod, "PROBE", 4 << 10)


def test_a_fine_tuned_model_costs_its_changed_tensors(tmp_path, keys, trust_file,
                                                      small_windows):
    import numpy as np

    rng = np.random.default_rng(7)
    tensors = [(f"layer{i}.weight", rng.standard_normal(4096, np.float32).tobytes())
               for i in range(40)]  # 40 x 16 KiB
    tuned = list(tensors)
    for i in (37, 38, 39):  # a fine-tune of the last layers
        tuned[i] = (tensors[i][0], rng.standard_normal(4096, np.float32).tobytes())
    for name, weights in (("old", tensors), ("new", tuned)):
        folder = tmp_path / name
        folder.mkdir()
        _onnx(folder / "model.onnx", weights)
        (folder / "bundle.yaml").write_text(
            f"apiVersion: oemkit/v1\nname: big\nversion: '{'1.0' if name == 'old' else '1.1'}'"
            "\nmodel: model.onnx\n")
    old = _build(tmp_path / "old", tmp_path / "d1", keys)
    new = _build(tmp_path / "new", tmp_path / "d2", keys)
    delta = tmp_path / "big.oemd"
    result = make_delta(old, new, delta)
    model = result.header.files[0]
    assert model.op == "patched"
    changed = 3 * 16384
    assert changed * 0.9 < model.cost <= 1.1 * changed, model.cost  # random: incompressible
    copies = [p for p in model.pieces if p.op == "copy"]
    assert sum(p.length for p in copies) >= 37 * 16384  # the unchanged tensors
    rebuilt = tmp_path / "rebuilt.oemb"
    patch_bundle(old, delta, rebuilt, trust_file)
    assert rebuilt.read_bytes() == new.read_bytes()


def test_a_few_changed_bytes_in_a_large_file_cost_a_few_bytes(tmp_path, keys, trust_file,
                                                              small_windows):
    import os

    blob = os.urandom(300 << 10)
    moved = bytearray(blob)
    moved[100_000:100_010] = b"0123456789"
    moved[200_000:200_000] = b"inserted"  # shifts the rest by 8 bytes
    for name, data in (("old", blob), ("new", bytes(moved))):
        folder = tmp_path / name
        shutil.copytree(REPO / "bundles" / "example", folder)
        (folder / "weights.bin").write_bytes(data)
        spec = folder / "bundle.yaml"
        spec.write_text(spec.read_text().replace("files: []", "files: [weights.bin]").replace(
            "version: 0.2.0", f"version: 0.2.{0 if name == 'old' else 1}"))
    old = _build(tmp_path / "old", tmp_path / "d1", keys)
    new = _build(tmp_path / "new", tmp_path / "d2", keys)
    result = make_delta(old, new, tmp_path / "w.oemd")
    weights = next(r for r in result.header.files if r.name == "weights.bin")
    assert weights.op == "patched" and weights.cost < 4096, weights.cost
    patch_bundle(old, tmp_path / "w.oemd", tmp_path / "r.oemb", trust_file)
    assert (tmp_path / "r.oemb").read_bytes() == new.read_bytes()


# --------------------------------------------------------------------------- wheels, --pair


def _wheel(path: Path, dist: str, version: str, body: bytes) -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        info = zipfile.ZipInfo(f"{dist}/core.py", date_time=(2020, 1, 1, 0, 0, 0))
        z.writestr(info, body)
        meta = zipfile.ZipInfo(f"{dist}-{version}.dist-info/METADATA",
                               date_time=(2020, 1, 1, 0, 0, 0))
        z.writestr(meta, f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")


def test_a_bumped_wheel_is_patched_against_its_old_version(tmp_path, keys, trust_file):
    import random

    body = "".join(f"def f{i}(x):\n    return x * {random.Random(i).random()}\n"
                   for i in range(3000)).encode()
    for name, version in (("old", "1.0.0"), ("new", "1.0.1")):
        folder = tmp_path / name
        shutil.copytree(REPO / "bundles" / "example", folder)
        (folder / "wheels").mkdir()
        _wheel(folder / "wheels" / f"fastmath-{version}-py3-none-any.whl", "fastmath", version,
               body)
        spec = folder / "bundle.yaml"
        spec.write_text(spec.read_text().replace("files: []", "wheelhouse: wheels").replace(
            "version: 0.2.0", f"version: 0.2.{0 if name == 'old' else 1}"))
    old = _build(tmp_path / "old", tmp_path / "d1", keys)
    new = _build(tmp_path / "new", tmp_path / "d2", keys)
    result = make_delta(old, new, tmp_path / "w.oemd")
    wheel = next(r for r in result.header.files if r.name.endswith(".whl"))
    assert wheel.op == "patched" and wheel.cost < wheel.size // 10, (wheel.cost, wheel.size)
    patch_bundle(old, tmp_path / "w.oemd", tmp_path / "r.oemb", trust_file)
    assert (tmp_path / "r.oemb").read_bytes() == new.read_bytes()


def test_pair_patches_a_renamed_file_and_a_bad_pair_is_named(tmp_path, keys, trust_file):
    def rename(folder: Path) -> None:
        (folder / "runtime" / "main.py").rename(folder / "runtime" / "serve.py")
        spec = folder / "bundle.yaml"
        spec.write_text(spec.read_text().replace("runtime/main.py", "runtime/serve.py"))
        serve = folder / "runtime" / "serve.py"
        serve.write_text(serve.read_text() + "\n# renamed\n")

    old = _build(_release(tmp_path, "old", "0.2.0"), tmp_path / "d1", keys)
    new = _build(_release(tmp_path, "new", "0.2.1", rename), tmp_path / "d2", keys)
    plain = make_delta(old, new, None)
    paired = make_delta(old, new, None, pairs={"runtime/serve.py": "runtime/main.py"})
    cost = {r.name: (r.op, r.cost) for r in plain.header.files}
    cost_paired = {r.name: (r.op, r.cost) for r in paired.header.files}
    assert cost["runtime/serve.py"][0] == "whole"
    assert cost_paired["runtime/serve.py"][0] == "patched"
    assert cost_paired["runtime/serve.py"][1] < cost["runtime/serve.py"][1] // 4
    bad = cli("delta", old, new, "--explain", "--pair", "runtime/serve.py=runtime/nope.py")
    assert bad.exit_code == 3 and "E_DELTA_PAIR" in bad.output
    assert "runtime/nope.py is not a payload file of OLD" in bad.output
    usage = cli("delta", old, new, "--explain", "--pair", "nonsense")
    assert usage.exit_code == 2 and "is not NEWPATH=OLDPATH" in usage.output


# --------------------------------------------------------------------------- usage, format


def test_usage_errors(pair, tmp_path):
    old, _ = pair
    assert "E_DELTA_SAME" in cli("delta", old, old, "--explain").output
    missing = cli("delta", old, old)
    assert missing.exit_code == 2 and "needs --out FILE (or --explain)" in missing.output
    both = cli("upgrade", old, "--delta", tmp_path / "x.oemd", "--prefix", tmp_path / "p",
               "--trust", tmp_path / "t.json")
    assert both.exit_code == 2 and "takes a bundle or --delta (both were given)" in both.output
    exists = tmp_path / "exists.oemd"
    exists.write_bytes(b"keep")
    refused = cli("delta", old, pair[1], "--out", exists)
    assert refused.exit_code == 3 and "E_OUTPUT_EXISTS" in refused.output
    assert exists.read_bytes() == b"keep"


def test_not_a_delta(pair, trust_file, tmp_path):
    old, new = pair
    result = cli("patch", old, new, "--out", tmp_path / "x.oemb", "--trust", trust_file)
    assert result.exit_code == 1 and "E_DELTA_INVALID" in result.output
    assert "is not an oemkit delta" in result.output


def _first_patched(doc: dict) -> int:
    """The index of the first file recipe patched against OLD (a frame with a dictionary)."""
    return next(i for i, f in enumerate(doc["files"]) if isinstance(f, dict)
                and f["pieces"][0].get("dict"))


def _src(doc: dict, i: int, value: str) -> None:
    doc["files"][i]["pieces"][0]["dict"][0][0] = value


@pytest.mark.parametrize(("change", "field"), [
    (lambda d, i: d.update(extra=1), "header"),
    (lambda d, i: _src(d, i, "http:x"), "files[{i}].pieces[0].dict[0].src"),
    (lambda d, i: _src(d, i, "old:licenses/x.lic"), "files[{i}].pieces[0].dict[0].src"),
    (lambda d, i: d["members"][0]["pieces"][0].update(len=1), "members[0].pieces"),
    (lambda d, i: _src(d, i, "file:../etc/passwd"), "files[{i}].pieces[0].dict[0].src"),
    (lambda d, i: d["files"].__setitem__(0, "same"), "files[0]"),
    (lambda d, i: d["compressor"].update(level=99), "compressor.level"),
])
def test_the_header_is_parsed_strictly(pair, tmp_path, change, field):
    old, new = pair
    result = make_delta(old, new, None)
    doc = result.header.to_dict()
    i = _first_patched(doc)
    change(doc, i)
    with pytest.raises(FormatError) as caught:
        DeltaHeader.from_dict(doc)
    assert caught.value.code == "E_DELTA_INVALID"
    assert caught.value.field == field.format(i=i)


def test_unchanged_files_are_written_as_same(pair):
    """A file that is the OLD file of its own path, whole, costs one string in the header."""
    old, new = pair
    header = make_delta(old, new, None).header
    doc = header.to_dict()
    same = [r.name for r in header.files if r.same]
    assert "model/model.onnx" in same and "runtime/main.py" not in same
    assert sum(1 for f in doc["files"] if f == "=") == len(same)
    names = [(r.name, r.size) for r in header.files]
    assert DeltaHeader.from_dict(doc).with_names(names) == header


def test_file_recipes_must_make_the_manifest_s_files(pair):
    """File recipes carry no names or sizes (NEW's manifest has them): checked against it."""
    old, new = pair
    header = make_delta(old, new, None).header
    doc = header.to_dict()
    i = _first_patched(doc)
    doc["files"][i]["pieces"][0]["len"] += 1
    parsed = DeltaHeader.from_dict(doc)
    files = [(r.name, r.size) for r in header.files]
    with pytest.raises(FormatError) as caught:
        parsed.with_names(files)
    assert caught.value.code == "E_DELTA_INVALID"
    assert caught.value.field == f"files[{i}].pieces"
    assert f"which NEW's manifest says has {files[i][1]}" in caught.value.message
    with pytest.raises(FormatError) as fewer:
        header.with_names(files[:-1])
    assert f"for NEW's {len(files) - 1} payload files" in fewer.value.message


def test_a_frame_over_the_piece_limit_is_refused(pair):
    old, new = pair
    doc = make_delta(old, new, None).header.to_dict()
    recipe = doc["files"][_first_patched(doc)]
    frame = next(p for p in recipe["pieces"] if p["op"] == "zstd")
    frame["len"] = (32 << 20) + 1
    with pytest.raises(FormatError) as caught:
        DeltaHeader.from_dict(doc)
    assert caught.value.code == "E_DELTA_INVALID"
    assert "from 0 to 33554432" in caught.value.message


# --------------------------------------------------------------------------- upgrade --delta

pytestmark = [pytest.mark.enable_socket, pytest.mark.allow_hosts(["127.0.0.1"])]


def _installed_with_delta(pair, trust_file, tmp_path, monkeypatch) -> tuple[Path, Path]:
    """OLD installed under tmp_path/opt, and the delta OLD -> NEW beside it."""
    monkeypatch.setenv("OEMKIT_STATE", str(tmp_path / "state.json"))
    old, new = pair
    delta = tmp_path / "new.oemd"
    make_delta(old, new, delta)
    prefix = tmp_path / "opt"
    first = cli("install", old, "--prefix", prefix, "--trust", trust_file, "--skip-smoke",
                "--service", "none", "--json")
    assert first.exit_code == 0, first.output
    return prefix, delta


def test_upgrade_with_a_delta_from_the_installed_slot(pair, trust_file, tmp_path,
                                                      monkeypatch):
    from helpers import read_members

    old = pair[0]
    prefix, delta = _installed_with_delta(pair, trust_file, tmp_path, monkeypatch)
    kept = prefix / "current" / "members"
    assert (kept / "sbom.cdx.json").is_file() and (kept / "provenance.intoto.json").is_file()
    assert [p.name for p in (kept / "signatures").iterdir()] == [
        n.rsplit("/", 1)[1] for n, _ in read_members(old) if n.startswith("signatures/")]
    assert len(list((kept / "links").iterdir())) == 1
    up = cli("upgrade", "--delta", delta, "--prefix", prefix, "--trust", trust_file,
             "--skip-smoke", "--service", "none", "--json")
    assert up.exit_code == 0, up.output
    doc = json.loads(up.stdout)
    assert doc["ok"] and "0.3.0" in doc["slot"]
    state = json.loads(cli("status", "--prefix", prefix, "--json").stdout)
    current = next(s for s in state["slots"] if s["current"])
    assert current["version"] == "0.3.0"
    assert current["bundle_file"] == f"{delta.resolve()} (oemkit upgrade --delta)"
    assert (prefix / "current" / "bundle" / "labels.txt").is_file()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".oemkit")) == []


def test_upgrade_with_a_delta_needs_what_the_slot_keeps(pair, trust_file, tmp_path,
                                                        monkeypatch):
    prefix, delta = _installed_with_delta(pair, trust_file, tmp_path, monkeypatch)
    shutil.rmtree(prefix / "current" / "members")  # as a slot an older oemkit installed
    up = cli("upgrade", "--delta", delta, "--prefix", prefix, "--trust", trust_file,
             "--skip-smoke", "--service", "none")
    assert up.exit_code == 1 and "E_DELTA_BASE" in up.output
    assert "does not keep" in up.output and "oemkit patch" in up.output
    state = json.loads(cli("status", "--prefix", prefix, "--json").stdout)
    assert [s["version"] for s in state["slots"]] == ["0.2.0"]
    empty = cli("upgrade", "--delta", delta, "--prefix", tmp_path / "none", "--trust",
                trust_file)
    assert empty.exit_code == 3 and "E_NOT_INSTALLED" in empty.output


# --------------------------------------------------------------------------- hostile deltas

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@pytest.fixture(scope="module")
def hostile_base(pair, tmp_path_factory, trust_v2):
    old, new = pair
    tmp = tmp_path_factory.mktemp("hostile")
    delta = tmp / "new.oemd"
    make_delta(old, new, delta)
    trust = tmp / "trust-root.json"
    trust.write_bytes(trust_v2)
    return old, delta.read_bytes(), trust


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_a_damaged_delta_is_always_a_coded_refusal(hostile_base, tmp_path_factory, data):
    """Bytes flipped or cut anywhere: a coded error (never a traceback) and no output, or,
    where the damage is in bytes nothing reads (padding), the exact NEW bundle."""
    from oemkit.errors import OemkitError

    old, good, trust = hostile_base
    raw = bytearray(good)
    if data.draw(st.booleans(), label="truncate"):
        raw = raw[: data.draw(st.integers(0, len(raw) - 1), label="at")]
    else:
        for _ in range(data.draw(st.integers(1, 4), label="flips")):
            at = data.draw(st.integers(0, len(raw) - 1), label="at")
            raw[at] ^= data.draw(st.integers(1, 255), label="xor")
    work = tmp_path_factory.mktemp("case")
    (work / "d.oemd").write_bytes(bytes(raw))
    out = work / "out" / "new.oemb"
    try:
        result = patch_bundle(old, work / "d.oemd", out, trust)
    except OemkitError as exc:
        assert exc.code.startswith("E_"), exc
        assert not out.exists()
        assert not (work / "out").exists() or list((work / "out").iterdir()) == []
    else:
        assert result.report.ok and out.read_bytes() == _new_of(old).read_bytes()


def test_data_after_the_end_of_a_delta_is_refused(pair, trust_file, tmp_path):
    old, new = pair
    delta = tmp_path / "new.oemd"
    make_delta(old, new, delta)
    delta.write_bytes(delta.read_bytes() + b"\0")
    result = cli("patch", old, delta, "--out", tmp_path / "x.oemb", "--trust", trust_file)
    assert result.exit_code == 1 and "E_DELTA_INVALID" in result.output
    assert "has 1 bytes after its end" in result.output
