"""Test helpers: read and rewrite outer bundle members, forge signed bundles from raw parts.

Forging uses the library's own writers so hostile tests can produce a bundle that is
correctly signed by a trusted key and differs from a good one only in the attack under test.
"""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Sequence
from pathlib import Path

import zstandard

from oemkit._canonical import sha256_hex
from oemkit._fs import END_OF_ARCHIVE, write_member
from oemkit._time import from_epoch
from oemkit.crypto.dsse import INTOTO_PAYLOAD_TYPE, make_envelope, sigstore_bundle
from oemkit.crypto.keys import PrivateKeyInfo
from oemkit.models.manifest import FileEntry, Manifest, MemberDigest, Runtime
from oemkit.release.provenance import make_statement
from oemkit.release.sbom import make_sbom

PASSPHRASE = b"oemkit-example-insecure"
REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "bundles" / "example"
#: The example bundle's config section (bundles/example/bundle.yaml), as build writes it,
#: and the files it names (the unverified-reader property tests and fuzz target use them).
EXAMPLE_CONFIG_SECTION = {
    "file": "config/config.json", "schema": "config/config.schema.json", "version": 2,
    "history": [{"version": 1, "schema": "config/v1.schema.json",
                 "samples": ["config/samples/v1.json"]}],
    "migrations": "config/migrations.yaml",
}
EXAMPLE_CONFIG_FILES = ("config/config.json", "config/config.schema.json",
                        "config/migrations.yaml", "config/v1.schema.json",
                        "config/samples/v1.json")
KEYS = REPO / "keys-example"


def read_members(path: Path) -> list[tuple[str, bytes]]:
    """All outer members, in order (uses tarfile, deliberately not oemkit's reader)."""
    out = []
    with tarfile.open(path, "r:") as tar:
        for info in tar:
            data = tar.extractfile(info)
            out.append((info.name, data.read() if data else b""))
    return out


def write_members(path: Path, members: Sequence[tuple[str, bytes]], trailing: bytes = b"") -> Path:
    """Write an outer archive with exactly these members (oemkit's own header writer)."""
    buf = io.BytesIO()
    for name, data in members:
        write_member(buf, name, data)
    buf.write(END_OF_ARCHIVE)
    buf.write(trailing)
    Path(path).write_bytes(buf.getvalue())
    return Path(path)


def replace_member(members: Sequence[tuple[str, bytes]], name: str, data: bytes
                   ) -> list[tuple[str, bytes]]:
    return [(n, data if n == name else d) for n, d in members]


def tar_bytes(entries: Sequence[tuple[tarfile.TarInfo, bytes | None]],
              fmt: int = tarfile.PAX_FORMAT) -> bytes:
    """An inner payload tar from (TarInfo, data) pairs; data None for non-regular members."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for info, data in entries:
            if data is not None:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
    return buf.getvalue()


def regular(name: str, data: bytes, mode: int = 0o644) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.mode = mode
    return info, data


def forged_model(files: Sequence[FileEntry]) -> str:
    """The model path a forged manifest names: one its file list holds, where it has any."""
    paths = [f.path for f in files]
    if "model/model.onnx" in paths or not paths:
        return "model/model.onnx"
    return paths[0]


def forge_bundle(
    path: Path,
    inner_tar: bytes,
    files: Sequence[FileEntry],
    keys: Sequence[PrivateKeyInfo],
    *,
    compressed: bytes | None = None,
    extra_members: Sequence[tuple[str, bytes]] = (),
    model: str | None = None,
) -> Path:
    """A fully signed bundle around an arbitrary inner tar and manifest file list. The
    runtime's model is ``model``, else the listed ``model/model.onnx``, else the first
    listed file (verify requires it to be listed)."""
    if model is None:
        model = forged_model(files)
    payload = compressed if compressed is not None else zstandard.ZstdCompressor().compress(
        inner_tar)
    when = from_epoch(0)
    sbom = make_sbom("forged", "1.0.0", "", files, model, when)
    members = {"sbom.cdx.json": MemberDigest(sha256_hex(sbom), len(sbom)),
               "payload.tar.zst": MemberDigest(sha256_hex(payload), len(payload))}
    for name, data in extra_members:
        members[name] = MemberDigest(sha256_hex(data), len(data))
    manifest = Manifest(name="forged", version="1.0.0", build_time="1970-01-01T00:00:00Z",
                        builder={"name": "oemkit", "version": "test"},
                        runtime=Runtime(model=model), files=tuple(files), members=members)
    manifest_bytes = manifest.to_bytes()
    provenance = make_statement(
        {"oemkit-bundle.json": sha256_hex(manifest_bytes), "payload.tar.zst": sha256_hex(payload)},
        spec_name="bundle.yaml", spec_sha256="0" * 64, options={}, dependencies=[],
        build_time=when)
    out = [("oemkit-bundle.json", manifest_bytes), ("sbom.cdx.json", sbom),
           ("provenance.intoto.json", provenance), *extra_members,
           ("payload.tar.zst", payload)]
    out += sign_members(provenance, keys)
    return write_members(path, out)


def sign_members(provenance: bytes, keys: Sequence[PrivateKeyInfo]) -> list[tuple[str, bytes]]:
    """Signature members over ``provenance``, one per key, sorted by name."""
    sigs = []
    for key in keys:
        env = make_envelope([key], INTOTO_PAYLOAD_TYPE, provenance)
        doc = json.dumps(sigstore_bundle(env, key.public), indent=2, sort_keys=True) + "\n"
        sigs.append((f"signatures/{key.keyid}.sigstore.json", doc.encode()))
    return sorted(sigs)


def entry(path: str, data: bytes, mode: int = 0o644) -> FileEntry:
    return FileEntry(path, len(data), sha256_hex(data), mode)


def reseal(members: Sequence[tuple[str, bytes]], keys: Sequence[PrivateKeyInfo], *,
           sbom: bytes | None = None, subjects: dict[str, str] | None = None
           ) -> list[tuple[str, bytes]]:
    """Re-issue a bundle's manifest, provenance and signatures around a changed SBOM or
    changed provenance subjects: what a holder of a trusted key would produce."""
    parts = dict(members)
    manifest = json.loads(parts["oemkit-bundle.json"])
    if sbom is not None:
        parts["sbom.cdx.json"] = sbom
        manifest["members"]["sbom.cdx.json"] = {"sha256": sha256_hex(sbom), "size": len(sbom)}
    from oemkit._canonical import canonical_json

    manifest_bytes = canonical_json(manifest)
    statement = json.loads(parts["provenance.intoto.json"])
    digests = {"oemkit-bundle.json": sha256_hex(manifest_bytes),
               "payload.tar.zst": sha256_hex(parts["payload.tar.zst"]), **(subjects or {})}
    statement["subject"] = [{"name": n, "digest": {"sha256": d}} for n, d in digests.items()]
    provenance = canonical_json(statement)
    parts["oemkit-bundle.json"], parts["provenance.intoto.json"] = manifest_bytes, provenance
    kept = [(n, parts[n]) for n, _ in members if not n.startswith("signatures/")]
    return kept + sign_members(provenance, keys)


def zipmap_model(path: Path) -> Path:
    """A scikit-learn-style classifier (LinearClassifier + ZipMap, as skl2onnx writes it):
    a label tensor and a seq(map(int64, float)) output; the batch dimension unnamed."""
    from onnx import TensorProto, checker, helper

    x = helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, 4])
    label = helper.make_tensor_value_info("label", TensorProto.INT64, [None])
    zipped = helper.make_value_info("output_probability", helper.make_sequence_type_proto(
        helper.make_map_type_proto(TensorProto.INT64,
                                   helper.make_tensor_type_proto(TensorProto.FLOAT, []))))
    nodes = [
        helper.make_node("LinearClassifier", ["X"], ["label", "probabilities"],
                         domain="ai.onnx.ml", coefficients=[0.1 * i - 0.5 for i in range(12)],
                         intercepts=[0.1, 0.2, 0.3], classlabels_ints=[0, 1, 2],
                         post_transform="SOFTMAX"),
        helper.make_node("ZipMap", ["probabilities"], ["output_probability"],
                         domain="ai.onnx.ml", classlabels_int64s=[0, 1, 2])]
    model = helper.make_model(helper.make_graph(nodes, "zipmap", [x], [label, zipped]),
                              opset_imports=[helper.make_opsetid("", 17),
                                             helper.make_opsetid("ai.onnx.ml", 3)])
    model.ir_version = 9
    checker.check_model(model)
    path.write_bytes(model.SerializeToString())
    return path
