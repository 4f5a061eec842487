"""The outer-archive codec at its edges: members over 8 GiB, pax headers, atomic writes."""

from __future__ import annotations

import io
import tarfile

import pytest

from oemkit._fs import (
    BLOCK,
    END_OF_ARCHIVE,
    MAX_USTAR_SIZE,
    atomic_output,
    padding,
    scan_outer,
    ustar_header,
    write_member,
)
from oemkit.errors import VerificationError

GIB = 1 << 30


def _scan(path):
    with open(path, "rb") as handle:
        return scan_outer(handle, max_members=16, max_member_size=lambda name: 1 << 40)


def test_member_over_8_gib_uses_a_pax_size_record(tmp_path):
    size = 9 * GIB
    path = tmp_path / "big.oemb"
    with open(path, "wb") as out:
        write_member(out, "oemkit-bundle.json", b"{}")
        out.write(ustar_header("payload.tar.zst", size))
        out.seek(size + len(padding(size)), io.SEEK_CUR)  # sparse: nothing is written
        out.write(END_OF_ARCHIVE)
    members = _scan(path)
    assert [(m.name, m.size) for m in members] == [("oemkit-bundle.json", 2),
                                                  ("payload.tar.zst", size)]
    # Python's tarfile (an independent reader) agrees on name and size.
    with tarfile.open(path) as tar:
        assert [(i.name, i.size) for i in tar.getmembers()][-1] == ("payload.tar.zst", size)


def test_small_members_stay_plain_ustar():
    assert len(ustar_header("x", MAX_USTAR_SIZE)) == BLOCK
    assert len(ustar_header("x", MAX_USTAR_SIZE + 1)) == 3 * BLOCK


@pytest.mark.parametrize("record", [b"18 path=/etc/pwd\n", b"15 size=12345\n",
                                    b"24 size=9663676416\nxxxx\n"])
def test_pax_header_with_anything_but_a_large_size_is_rejected(tmp_path, record):
    info = tarfile.TarInfo("././@PaxHeader")
    info.type = tarfile.XHDTYPE
    info.size = len(record)
    buf = io.BytesIO()
    buf.write(info.tobuf(format=tarfile.USTAR_FORMAT))
    buf.write(record + padding(len(record)))
    write_member(buf, "oemkit-bundle.json", b"{}")
    buf.write(END_OF_ARCHIVE)
    path = tmp_path / "b.oemb"
    path.write_bytes(buf.getvalue())
    with pytest.raises(VerificationError) as err:
        _scan(path)
    assert err.value.code == "E_TAR_HEADER" and "pax header" in err.value.message


def test_atomic_output_leaves_nothing_on_error(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_output(target) as handle:
        handle.write(b"new, half written")
        raise RuntimeError("disk pulled")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_unpack_write_failure_is_an_environment_error(signed_bundle, trust_file, tmp_path,
                                                      monkeypatch):
    import os

    import oemkit.host.unpack as unpack

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(unpack.os, "rename", full)
    from oemkit.errors import EnvironmentProblem

    with pytest.raises(EnvironmentProblem) as err:
        unpack.unpack_bundle(signed_bundle, tmp_path / "dest", trust_file)
    assert err.value.code == "E_WRITE" and "No space left" in err.value.message
    assert err.value.exit_code == 4
    assert sorted(os.listdir(tmp_path)) == sorted([signed_bundle.name, trust_file.name])


def test_unpacked_directory_mode_follows_umask(signed_bundle, trust_file, tmp_path):
    import os
    import stat

    from oemkit.host.unpack import unpack_bundle

    old = os.umask(0o022)
    try:
        assert unpack_bundle(signed_bundle, tmp_path / "dest", trust_file).ok
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "dest").stat().st_mode) == 0o755


def test_force_unpack_restores_the_old_dest_when_the_final_rename_fails(
        signed_bundle, trust_file, tmp_path, monkeypatch):
    import os

    import oemkit.host.unpack as unpack
    from oemkit.errors import EnvironmentProblem

    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "keep.txt").write_bytes(b"old contents")
    real_rename = os.rename

    def rename(src, dst, *args, **kwargs):
        if os.fspath(dst) == os.fspath(dest) and ".unpack-" in os.fspath(src):
            raise OSError(28, "No space left on device")
        return real_rename(src, dst, *args, **kwargs)

    monkeypatch.setattr(unpack.os, "rename", rename)
    with pytest.raises(EnvironmentProblem) as err:
        unpack.unpack_bundle(signed_bundle, dest, trust_file, force=True)
    assert err.value.code == "E_WRITE" and "No space left" in err.value.message
    assert str(dest) in err.value.message and "left as it was" in err.value.hint
    assert sorted(os.listdir(dest)) == ["keep.txt"]
    assert (dest / "keep.txt").read_bytes() == b"old contents"
    assert sorted(os.listdir(tmp_path)) == sorted([signed_bundle.name, trust_file.name, "dest"])


def test_unpacked_subdirectories_get_the_same_mode_as_dest(signed_bundle, trust_file, tmp_path):
    import os
    import stat

    from oemkit.host.unpack import unpack_bundle

    old = os.umask(0o002)
    try:
        assert unpack_bundle(signed_bundle, tmp_path / "dest", trust_file).ok
    finally:
        os.umask(old)
    dest = tmp_path / "dest"
    dirs = [dest, *(p for p in dest.rglob("*") if p.is_dir())]
    assert dest / "config" in dirs
    assert {str(p.relative_to(tmp_path)): stat.S_IMODE(p.stat().st_mode) for p in dirs} == {
        str(p.relative_to(tmp_path)): 0o755 for p in dirs}
