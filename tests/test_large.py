"""Large bundles (issue 8): constant memory, the direct-write build path, write failures.

Sizes stay small enough for a unit test run (a 300 MB payload of zeros, tens of MB of
random data); benchmarks/large_bundle.py measures the real thing. No wall-clock
assertions here.
"""

from __future__ import annotations

import errno
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from helpers import EXAMPLE, KEYS, PASSPHRASE, entry, forge_bundle
from oemkit._fs import RangeReader, copy_member, hash_fd
from oemkit.errors import VerificationError
from oemkit.release import bundle as build_mod
from oemkit.release.bundle import BuildWriteError, build_bundle
from oemkit.release.sign import sign_bundle
from oemkit.verify.bundle import verify_bundle

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
import make_large  # noqa: E402


def _spec(tmp_path: Path, size: str, files: int, data: str = "random") -> Path:
    out = tmp_path / f"spec-{size}-{data}"
    make_large.make(out, make_large.parse_size(size), files, data)
    return out / "bundle.yaml"


# --------------------------------------------------------------------------- make_large


def test_make_large_writes_a_real_onnx_model(tmp_path):
    spec = _spec(tmp_path, "1MiB", 12)
    model = spec.parent / "model" / "model.onnx"
    assert model.stat().st_size == 1 << 20  # exact size
    from oemkit.release.modelcard import read_model_card

    card = read_model_card(model)
    assert card.inputs[0].describe() == "ids: int64[batch]"
    assert card.outputs[0].describe() == "y: float32[batch,256]"
    assert card.parameter_count * 4 >= (1 << 20) - 1024
    onnx = pytest.importorskip("onnx")
    onnx.checker.check_model(onnx.load(str(model)))
    assert len(list((spec.parent / "extra").rglob("*"))) >= 12


def test_make_large_zeros_are_sparse(tmp_path):
    spec = _spec(tmp_path, "256MiB", 0, "zeros")
    model = spec.parent / "model" / "model.onnx"
    assert model.stat().st_size == 256 << 20
    assert model.stat().st_blocks * 512 < 1 << 20  # a hole, not 256 MiB of disk


# --------------------------------------------------------------------------- build paths


@pytest.fixture(scope="module")
def random_spec(tmp_path_factory):
    """A 24 MiB random model and 30 small files: large enough for the direct-write path."""
    return _spec(tmp_path_factory.mktemp("large"), "24MiB", 30)


def _build(spec: Path, out: Path, monkeypatch=None, **patches) -> bytes:
    for name, value in patches.items():
        monkeypatch.setattr(build_mod, name, value)
    result = build_bundle(spec, out)
    assert [p.name for p in out.iterdir()] == [result.path.name]  # nothing left behind
    return result.path.read_bytes()


def test_direct_write_is_byte_identical_to_the_copy_path(random_spec, tmp_path, monkeypatch):
    calls = []
    real = build_mod._pack_in_place

    def spy(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(build_mod, "_pack_in_place", spy)
    direct = _build(random_spec, tmp_path / "direct")
    assert calls == [1]
    copied = _build(random_spec, tmp_path / "copied", monkeypatch, DIRECT_MIN=1 << 62)
    assert calls == [1]  # the second build took the temporary-file path
    assert direct == copied
    # and again: reproducible
    assert _build(random_spec, tmp_path / "again") == direct


@pytest.mark.parametrize("guess", [lambda n: 10 ** 13, lambda n: 7],
                         ids=["too-large", "too-small"])
def test_wrongly_guessed_payload_size_falls_back_to_a_copy(random_spec, tmp_path, monkeypatch,
                                                           guess):
    expected = _build(random_spec, tmp_path / "ref")
    relocated = _build(random_spec, tmp_path / "moved", monkeypatch, _compressed_guess=guess)
    assert relocated == expected


def test_large_build_verifies(random_spec, tmp_path, keys, trust_v2):
    result = build_bundle(random_spec, tmp_path)
    sign_bundle(result.path, [keys["bundle"]])
    seen = []
    report = verify_bundle(result.path, trust_v2, progress=seen.append)
    assert report.ok, report.to_dict()
    assert report.files == 31 and report.payload_bytes == result.payload_bytes
    manifest = _manifest(result.path)
    assert sum(seen) == manifest["members"]["payload.tar.zst"]["size"]


def _manifest(path: Path) -> dict:
    with tarfile.open(path) as tar:
        return json.loads(tar.extractfile("oemkit-bundle.json").read())


def test_disk_full_mid_build(random_spec, tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("unrelated")
    written = {"n": 0}
    real_write = build_mod._Pipeline._write

    def write(self):
        sink = self._sink

        class Sink:
            def __getattr__(self, name):
                return getattr(sink, name)

            def write(self, data):
                written["n"] += len(data)
                if written["n"] > 4 << 20:
                    raise OSError(errno.ENOSPC, "No space left on device")
                return sink.write(data)

        self._sink = Sink()
        return real_write(self)

    monkeypatch.setattr(build_mod._Pipeline, "_write", write)
    with pytest.raises(BuildWriteError) as err:
        build_bundle(random_spec, out)
    assert err.value.code == "E_WRITE" and err.value.exit_code == 4
    assert isinstance(err.value, OSError) and err.value.errno == errno.ENOSPC
    assert "No space left" in err.value.message
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]


def test_disk_full_mid_build_cli_exit_4(random_spec, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from oemkit.cli import app

    def full(self):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(build_mod._Pipeline, "_write", full)
    result = CliRunner().invoke(app, ["build", str(random_spec), "--out", str(tmp_path / "o")])
    assert result.exit_code == 4, result.output
    assert "E_WRITE" in result.output and "Traceback" not in result.output
    assert list((tmp_path / "o").iterdir()) == []


def test_input_that_grows_while_packed_is_refused(tmp_path, monkeypatch):
    spec = tmp_path / "spec"
    import shutil

    shutil.copytree(EXAMPLE, spec)
    target = spec / "runtime" / "main.py"
    real_open = open

    class Growing:
        """Appends to the file on its first read, after the packer took its size."""

        def __init__(self, handle):
            self._handle, self._grown = handle, False

        def __getattr__(self, name):
            return getattr(self._handle, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self._handle.close()

        def read(self, size=-1):
            if not self._grown:
                self._grown = True
                with real_open(target, "ab") as more:
                    more.write(b"# appended while packing\n")
            return self._handle.read(size)

    def growing_open(path, *args, **kwargs):
        handle = real_open(path, *args, **kwargs)
        return Growing(handle) if Path(path) == target else handle

    monkeypatch.setattr(build_mod, "open", growing_open, raising=False)
    from oemkit.errors import InputError

    with pytest.raises(InputError) as err:
        build_bundle(spec / "bundle.yaml", tmp_path / "out")
    assert err.value.code == "E_INPUT_CHANGED" and "runtime/main.py" in err.value.message
    assert list((tmp_path / "out").iterdir()) == []


# --------------------------------------------------------------------------- inner tar reader


def _pax_sized_tar(name: str, data: bytes) -> bytes:
    """An entry whose size is given only by a PAX ``size`` record (as tarfile writes for
    files over 8 GiB), ustar size field 0."""
    record = f"size={len(data)}\n"
    record = f"{len(record) + 3} {record}"
    assert len(record.split(" ")[0]) == 2
    pax = tarfile.TarInfo("././@PaxHeader")
    pax.type = tarfile.XHDTYPE
    pax.size = len(record)
    out = io.BytesIO()
    out.write(pax.tobuf(format=tarfile.USTAR_FORMAT))
    out.write(record.encode().ljust(512, b"\0"))
    info = tarfile.TarInfo(name)
    info.size = 0
    info.mode = 0o644
    out.write(info.tobuf(format=tarfile.USTAR_FORMAT))
    out.write(data + bytes(-len(data) % 512))
    out.write(bytes(10240 - out.tell() % 10240))
    return out.getvalue()


def test_pax_size_record_is_honoured(tmp_path, keys, trust_v2):
    data = b"weights" * 100
    inner = _pax_sized_tar("model/model.onnx", data)
    with tarfile.open(fileobj=io.BytesIO(inner)) as tar:  # Python's reader agrees
        assert [(i.name, i.size) for i in tar.getmembers()] == [("model/model.onnx", len(data))]
    path = forge_bundle(tmp_path / "b.oemb", inner, [entry("model/model.onnx", data)],
                        [keys["bundle"]])
    report = verify_bundle(path, trust_v2)
    assert report.ok, report.to_dict()


def test_unpack_of_a_large_bundle_matches_the_inputs(random_spec, tmp_path, keys, trust_v2):
    from oemkit.host.unpack import unpack_bundle

    result = build_bundle(random_spec, tmp_path / "dist")
    sign_bundle(result.path, [keys["bundle"]])
    report = unpack_bundle(result.path, tmp_path / "dest", trust_v2)
    assert report.ok, report.to_dict()
    model = random_spec.parent / "model" / "model.onnx"
    assert (tmp_path / "dest" / "model" / "model.onnx").read_bytes() == model.read_bytes()


# --------------------------------------------------------------------------- _fs helpers


def test_copy_member_between_files_hashes_what_it_copies(tmp_path):
    src = tmp_path / "src.bin"
    data = os.urandom(3 << 20) + b"tail"
    src.write_bytes(b"HEAD" + data)
    with open(src, "rb") as handle, open(tmp_path / "out.bin", "wb") as out:
        handle.seek(4)
        digest = copy_member(out, "payload.tar.zst", handle, len(data))
        assert handle.tell() == 4 + len(data)
        out.write(b"after")
    import hashlib

    assert digest == hashlib.sha256(data).hexdigest()
    written = (tmp_path / "out.bin").read_bytes()
    assert written[512:512 + len(data)] == data and written.endswith(b"after")
    with open(src, "rb") as handle, open(tmp_path / "o2.bin", "wb") as out, \
            pytest.raises(VerificationError) as err:
        copy_member(out, "payload.tar.zst", handle, len(data) + 10)
    assert err.value.code == "E_TRUNCATED"


def test_range_reader_hashes_and_reports_short_files(tmp_path):
    path = tmp_path / "f.bin"
    data = os.urandom(5 << 20)
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    try:
        with RangeReader(fd, 100, len(data) - 100, short=RuntimeError) as reader:
            assert b"".join(reader) == data[100:]
            assert reader.hexdigest() == hash_fd(fd, 100, None)[0]
        with RangeReader(fd, 0, len(data) + 1, short=lambda n: RuntimeError(f"short {n}")) \
                as reader, pytest.raises(RuntimeError, match="short 1"):
            reader.drain()
        with RangeReader(fd, 0, len(data), short=RuntimeError, depth=1) as reader:
            assert reader.next_chunk()  # closing early stops the thread
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- constant memory


CHILD = """
import json, resource, sys
from pathlib import Path
action, spec, out = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
if action == "build":
    from oemkit.release.bundle import build_bundle
    path = build_bundle(spec, out).path
    from oemkit.release.sign import sign_bundle
    from oemkit.crypto.keys import load_private_file
    key = load_private_file(Path(sys.argv[4]) / "bundle.key", sys.argv[5].encode())
    sign_bundle(path, [key])
    ok = True
else:
    from oemkit.verify.bundle import verify_bundle
    path = next(out.glob("*.oemb"))
    ok = verify_bundle(path, Path(sys.argv[4])).ok
# VmHWM is this process's own peak; ru_maxrss after exec can carry the parent's (pytest's).
try:
    with open("/proc/self/status") as status:
        peak = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
except OSError:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"ok": ok, "maxrss_kb": peak}))
"""


def _peak(action: str, spec: Path, out: Path, *extra: str) -> int:
    proc = subprocess.run([sys.executable, "-c", CHILD, action, str(spec), str(out), *extra],
                          capture_output=True, text=True, check=True)
    doc = json.loads(proc.stdout)
    assert doc["ok"], proc.stderr
    return int(doc["maxrss_kb"]) * 1024


def test_build_and_verify_memory_does_not_grow_with_the_payload(tmp_path, trust_file):
    """A 300 MB payload peaks within a few MB of the 9-file example: whole-file buffering
    anywhere would show up as hundreds of MB."""
    big = _spec(tmp_path, "300MB", 40, "zeros")
    keys = (str(KEYS), PASSPHRASE.decode())
    peaks = {}
    for label, spec in (("small", EXAMPLE / "bundle.yaml"), ("big", big)):
        out = tmp_path / f"out-{label}"
        peaks[label] = (_peak("build", spec, out, *keys),
                        _peak("verify", spec, out, str(trust_file)))
    for i, what in enumerate(("build+sign", "verify")):
        small, big_peak = peaks["small"][i], peaks["big"][i]
        assert big_peak < 150 << 20, f"{what}: peak RSS {big_peak >> 20} MiB"
        assert big_peak - small < 48 << 20, (what, small >> 20, big_peak >> 20)


def test_fast_tar_headers_are_what_tarfile_writes():
    import random
    import string

    from oemkit.release.bundle import _header

    def _tarinfo_header(path: str, size: int, mode: int) -> bytes:  # the reference: tarfile
        info = tarfile.TarInfo(path)
        info.size, info.mode, info.mtime, info.uid, info.gid = size, mode, 0, 0, 0
        info.uname = info.gname = ""
        return info.tobuf(tarfile.PAX_FORMAT, sys.getfilesystemencoding(), "surrogateescape")

    rng = random.Random(8)
    names = ["a", "x" * 100, "x" * 101, "model/model.onnx", "caf\u00e9.txt", "a b/c", "d/" * 60]
    names += ["".join(rng.choice(string.ascii_letters + "/._- 0123456789")
                      for _ in range(rng.randint(1, 120))) for _ in range(300)]
    for name in names:
        for size in (0, 1, 512, 10**9, 0o77777777777, 0o77777777777 + 1, rng.randint(0, 1 << 40)):
            for mode in (0o644, 0o755):
                assert _header(name, size, mode) == _tarinfo_header(name, size, mode)


def test_verify_reads_a_handle_without_a_descriptor(signed_bundle, trust_v2):
    """Library callers may hand over a BytesIO: the payload is then read in this thread."""
    from oemkit.verify.bundle import verify_open_bundle

    report = verify_open_bundle(io.BytesIO(signed_bundle.read_bytes()), trust_v2)
    assert report.ok, report.to_dict()
    damaged = bytearray(signed_bundle.read_bytes())
    damaged[-2000] ^= 1  # inside the last signature or the payload's tail
    assert not verify_open_bundle(io.BytesIO(bytes(damaged)), trust_v2).ok


def _many_files_spec(tmp_path: Path, count: int) -> Path:
    """The example's model plus ``count`` ten-byte files under extra/."""
    root = tmp_path / f"spec-{count}"
    (root / "model").mkdir(parents=True)
    (root / "model" / "model.onnx").write_bytes((EXAMPLE / "model" / "model.onnx").read_bytes())
    for i in range(count):
        folder = root / "extra" / f"d{i // 1000:03d}"
        if i % 1000 == 0:
            folder.mkdir(parents=True)
        (folder / f"file-{i:06d}.txt").write_bytes(b"%010d" % i)
    (root / "bundle.yaml").write_text(
        'apiVersion: oemkit/v1\nname: "many"\nversion: "1.0.0"\nmodel: model/model.onnx\n'
        "files: [extra]\n")
    return root / "bundle.yaml"


def test_memory_per_payload_file_stays_small(tmp_path, trust_file):
    """Per-file metadata is held once, not as rich dicts plus chunk lists: the SBOM's
    indenting encoder alone used to cost 3.5 KiB per file and a 100,000-file build peaked
    at 515 MiB. Compared at 1,000 and 16,000 files, so start-up and the payload cancel."""
    keys = (str(KEYS), PASSPHRASE.decode())
    peaks = {}
    for count in (1000, 16000):
        spec = _many_files_spec(tmp_path, count)
        out = tmp_path / f"out-{count}"
        peaks[count] = (_peak("build", spec, out, *keys),
                        _peak("verify", spec, out, str(trust_file)))
    per_file = [(peaks[16000][i] - peaks[1000][i]) / 15000 for i in range(2)]
    # measured: before 4.4 (build) and 3.7 (verify) KiB per file, after 1.7 and 1.9; since
    # sign writes an in-toto link naming every payload file (issue 17), built by in-toto's
    # own Link model, whose validation holds about 10 MB a moment at 16,000 files: 2.9,
    # and 3.21 in one fresh-clone CI run of 2026-12-07 (the allocator's peaks move by a few
    # per cent between runs); 3.5 still fails the 4.4 this test was written against
    assert per_file[0] < 3.5 * 1024, f"build: {per_file[0] / 1024:.1f} KiB per file"
    assert per_file[1] < 3.5 * 1024, f"verify: {per_file[1] / 1024:.1f} KiB per file"


# --------------------------------------------------------------------------- giant bundles


def test_flags_needed_names_each_limit_a_bundle_passes():
    from oemkit.verify.bundle import Limits, flags_needed

    small = {"oemkit-bundle.json": 5000, "sbom.cdx.json": 9000, "payload.tar.zst": 1 << 30}
    assert flags_needed(small, 10) == []
    big_sbom = dict(small, **{"sbom.cdx.json": (64 << 20) + 1})
    assert flags_needed(big_sbom, 10) == [f"--max-member-size {65 << 20}"]
    # every member within 64 MiB, but together over the 256 MiB metadata budget
    wide = {f"m{i}": 60 << 20 for i in range(5)}
    assert flags_needed(wide, 10) == [f"--max-member-size {75 << 20}"]
    assert flags_needed(small, 1_000_001) == ["--max-files 1000001"]
    huge = dict(small, **{"payload.tar.zst": (1 << 40) + 5})
    assert flags_needed(huge, 10) == [f"--max-payload-bytes {(1 << 40) + (1 << 20)}"]
    assert flags_needed(small, 10, Limits(max_metadata_bytes=4096)) == [
        f"--max-member-size {1 << 20}"]


# install checks that the release becomes ready (oemkit serve on a loopback port).
@pytest.mark.enable_socket
@pytest.mark.allow_hosts(["127.0.0.1"])
def test_a_bundle_over_the_default_limits_is_named_at_build_and_flags_carry_it_through(
        tmp_path, monkeypatch, trust_file):
    """Build says which flags a giant bundle needs; sign, verify, install, upgrade, split
    and join all take them (shown here with limits lowered below the example's SBOM)."""
    from typer.testing import CliRunner

    import oemkit.verify.bundle as verify_mod
    from oemkit.cli import app

    monkeypatch.setattr(verify_mod, "DEFAULT_LIMITS", verify_mod.Limits(max_metadata_bytes=1024))
    monkeypatch.setenv("OEMKIT_KEY_PASSPHRASE", PASSPHRASE.decode())
    monkeypatch.setenv("OEMKIT_STATE", str(tmp_path / "state.json"))
    runner = CliRunner()
    built = runner.invoke(app, ["build", str(EXAMPLE), "--out", str(tmp_path), "--json"])
    assert built.exit_code == 0, built.output
    doc = json.loads(built.stdout)
    assert doc["verify_flags"] == [f"--max-member-size {1 << 20}"]
    bundle = doc["bundle"]
    low = ["--max-member-size", "1024"]
    high = ["--max-member-size", str(1 << 20)]
    key = ["--key", str(KEYS / "bundle.key")]
    refused = runner.invoke(app, ["sign", bundle, *key, *low, "--json"])
    assert refused.exit_code == 1 and '"E_MEMBER_SIZE"' in refused.stdout, refused.output
    assert runner.invoke(app, ["sign", bundle, *key, *high]).exit_code == 0
    trust = ["--trust", str(trust_file)]
    assert runner.invoke(app, ["verify", bundle, *trust, *low]).exit_code == 1
    assert runner.invoke(app, ["verify", bundle, *trust, *high]).exit_code == 0
    prefix = ["--prefix", str(tmp_path / "opt"), "--profile", "cpu-small"]
    failed = runner.invoke(app, ["install", bundle, *trust, *prefix, *low, "--json"])
    assert failed.exit_code == 1 and "E_MEMBER_SIZE" in failed.stdout, failed.output
    assert not (tmp_path / "opt" / "current").exists()
    ok = runner.invoke(app, ["install", bundle, *trust, *prefix, *high, "--json"])
    assert ok.exit_code == 0, ok.output
    again = runner.invoke(app, ["upgrade", bundle, *trust, *prefix, *low, "--json"])
    assert again.exit_code == 1 and "E_MEMBER_SIZE" in again.stdout, again.output
    media = tmp_path / "media"
    cut = ["split", bundle, "--size", "1M", "--out", str(media), "--json"]
    assert '"E_MEMBER_SIZE"' in runner.invoke(app, [*cut, *low]).stdout
    assert runner.invoke(app, [*cut, *high]).exit_code == 0
    parts = sorted(str(p) for p in media.iterdir())
    glue = ["join", *parts, *trust, "--out", str(tmp_path / "joined.oemb"), "--json"]
    refused = runner.invoke(app, [*glue, *low])
    assert refused.exit_code == 1 and "E_MEMBER_SIZE" in refused.stdout, refused.output
    assert not (tmp_path / "joined.oemb").exists()
    assert runner.invoke(app, [*glue, *high]).exit_code == 0
    assert (tmp_path / "joined.oemb").read_bytes() == Path(bundle).read_bytes()
