"""Shared assertions and builders for the hostile-input suite.

Every attack asserts the exact rejection: ``report.ok`` is False, the stable code, the key
words of the message and, where one is to blame, the member. CLI checks run the real
``oemkit`` command through typer's runner and never accept a traceback.
"""

from __future__ import annotations

import json
import shutil
import tarfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ed25519
from typer.testing import CliRunner

from helpers import EXAMPLE, read_members, sign_members, write_members
from oemkit._canonical import canonical_json
from oemkit.cli import app
from oemkit.crypto.dsse import make_envelope
from oemkit.crypto.keys import PrivateKeyInfo, key_id
from oemkit.models.report import VerifyReport
from oemkit.models.trust import TRUST_ROOT_PAYLOAD_TYPE, TrustRoot
from oemkit.release.bundle import build_bundle
from oemkit.release.sign import sign_bundle

runner = CliRunner()
SIG = "signatures/"


def assert_rejected(report: VerifyReport, code: str, *words: str,
                    member: str | None = None) -> None:
    """The report says no, with exactly this code, these words and (optionally) member."""
    detail = json.dumps(report.to_dict(), default=str, indent=1)
    assert report.ok is False, detail
    assert report.error is not None, detail
    assert report.error.code == code, detail
    for word in words:
        assert word in report.error.message, detail
    if member is not None:
        assert report.error.member == member, detail
    last = report.checks[-1]
    assert last.status == "fail" and last.code == code, detail
    assert report.to_dict()["verdict"] == "rejected"


def cli(*args: Any):
    """Invoke the CLI; a traceback in the output is always a failure."""
    result = runner.invoke(app, [str(a) for a in args])
    assert "Traceback" not in result.output, result.output
    assert not isinstance(result.exception, Exception) or isinstance(
        result.exception, SystemExit), repr(result.exception)
    return result


def assert_cli_verify_rejects(bundle: Path, trust: Path, code: str, exit_code: int = 1) -> None:
    """``oemkit verify`` says no in text and in --json, with this code and exit status."""
    text = cli("verify", bundle, "--trust", trust)
    assert text.exit_code == exit_code, text.output
    assert code in text.output, text.output
    assert code in text.stderr, text.stderr
    as_json = cli("verify", bundle, "--trust", trust, "--json")
    assert as_json.exit_code == exit_code, as_json.output
    doc = json.loads(as_json.stdout)  # stdout carries exactly one JSON document
    assert doc["ok"] is False
    assert doc["error"]["code"] == code


def fresh_key(name: str = "stranger") -> PrivateKeyInfo:
    """A new Ed25519 key that no trust root knows."""
    private = ed25519.Ed25519PrivateKey.generate()
    public = private.public_key()
    return PrivateKeyInfo(private, public, "ed25519", key_id(public), name)


def root_document(root: TrustRoot, signers: Sequence[PrivateKeyInfo]) -> bytes:
    """A trust root document signed by exactly ``signers``, with no checks (for forgeries)."""
    env = make_envelope(list(signers), TRUST_ROOT_PAYLOAD_TYPE, canonical_json(root.to_dict()))
    return (json.dumps(env.to_dict(), indent=2, sort_keys=True) + "\n").encode()


def unsigned(members: Sequence[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    return [(n, d) for n, d in members if not n.startswith(SIG)]


def resign(path: Path, source: Path, keys: Sequence[PrivateKeyInfo]) -> Path:
    """Write ``source``'s members to ``path`` with its signatures replaced by ``keys``'."""
    members = unsigned(read_members(source))
    provenance = dict(members)["provenance.intoto.json"]
    return write_members(path, [*members, *sign_members(provenance, keys)])


def member_offsets(path: Path) -> dict[str, tuple[int, int, int]]:
    """name -> (header offset, data offset, size) in the outer archive."""
    with tarfile.open(path, "r:") as tar:
        return {i.name: (i.offset, i.offset_data, i.size) for i in tar.getmembers()}


def flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def copy_example_spec(tmp: Path) -> Path:
    """A private, editable copy of bundles/example at ``tmp/spec``."""
    spec_dir = tmp / "spec"
    if spec_dir.exists():
        shutil.rmtree(spec_dir)
    shutil.copytree(EXAMPLE, spec_dir)
    return spec_dir


def build_example(tmp: Path, *, epoch: int | None = None, trust_roots: Sequence[bytes] = (),
                  keys: Sequence[PrivateKeyInfo] = ()) -> Path:
    """Build the example bundle from a private copy of its spec, optionally carrying trust
    root documents, at a given build time, signed by ``keys``."""
    spec_dir = copy_example_spec(tmp)
    if trust_roots:
        names = []
        for i, doc in enumerate(trust_roots):
            name = f"carried-root-{i}.json"
            (spec_dir / name).write_bytes(doc)
            names.append(name)
        with open(spec_dir / "bundle.yaml", "a") as handle:
            handle.write(f"trust_roots: {json.dumps(names)}\n")
    result = build_bundle(spec_dir / "bundle.yaml", tmp / "out",
                          source_date_epoch_override=epoch if epoch is not None else 0)
    if keys:
        sign_bundle(result.path, list(keys))
    return result.path
