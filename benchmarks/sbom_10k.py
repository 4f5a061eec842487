"""SBOM speed at 10,000 payload files (issue 3): generation and verify-time checking.

Prints seconds for oemkit's paths and for the baselines they replace, measured in the
same run on the same data, and their ratios:
  - generation: make_sbom (library skeleton + file components in the library's shape)
    vs. every component through cyclonedx-python-lib (its dependency registration is
    quadratic);
  - checking: parse + jsonschema-rs CycloneDX 1.6 validation + manifest cross-check vs.
    cyclonedx-python-lib's JsonStrictValidator (jsonschema; quadratic uniqueItems), the
    latter at --baseline-files components because at 10,000 it takes minutes.
  - end to end: build and verify of a real bundle with that many small files.

    python benchmarks/sbom_10k.py [--files 10000] [--baseline-files 2000] [--skip-e2e]
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import platform
import tempfile
import time
from pathlib import Path

from oemkit.models.manifest import FileEntry, Manifest, MemberDigest, Runtime
from oemkit.release.modelcard import read_model_card
from oemkit.release.sbom import make_sbom
from oemkit.verify.sbom import check_sbom

HERE = Path(__file__).resolve().parent
EXAMPLE = HERE.parent / "bundles" / "example"
WHEN = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


def entries(n: int) -> list[FileEntry]:
    out = [FileEntry(f"data/{i // 1000:02d}/f{i:05d}.bin", 64,
                     hashlib.sha256(i.to_bytes(4, "big")).hexdigest(), 0o644) for i in range(n)]
    out.append(FileEntry("model/model.onnx", 653, "ab" * 32, 0o644))
    return sorted(out, key=lambda e: e.path)


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return time.perf_counter() - start, result


def manifest_for(files: list[FileEntry]) -> Manifest:
    return Manifest(name="bench", version="1", build_time="2026-01-01T00:00:00Z",
                    builder={"name": "oemkit"}, runtime=Runtime(model="model/model.onnx"),
                    files=tuple(files), members={"sbom.cdx.json": MemberDigest("0" * 64, 0),
                                                 "payload.tar.zst": MemberDigest("0" * 64, 0)})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--baseline-files", type=int, default=2_000)
    parser.add_argument("--skip-e2e", action="store_true")
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {platform.processor() or '?'}, "
          f"python {platform.python_version()}")
    card = read_model_card(EXAMPLE / "model" / "model.onnx")

    files = entries(args.files)
    gen, sbom = timed(make_sbom, "bench", "1", "", files, "model/model.onnx", WHEN,
                      model_card=card)
    base_gen, base_sbom = timed(make_sbom, "bench", "1", "", files, "model/model.onnx", WHEN,
                                model_card=card, fast=False)
    assert base_sbom == sbom, "fast path and library path disagree"
    chk, _ = timed(check_sbom, sbom, manifest_for(files))
    print(f"generate {args.files} files: oemkit {gen:.2f} s, library-only {base_gen:.2f} s "
          f"(ratio {base_gen / gen:.1f}x)")
    print(f"check    {args.files} files: oemkit {chk:.2f} s (parse + CycloneDX 1.6 schema + "
          "manifest cross-check)")

    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    small = entries(args.baseline_files)
    small_sbom = make_sbom("bench", "1", "", small, "model/model.onnx", WHEN, model_card=card)
    ours, _ = timed(check_sbom, small_sbom, manifest_for(small))
    validator = JsonStrictValidator(SchemaVersion.V1_6)
    theirs, error = timed(validator.validate_str, small_sbom.decode())
    assert error is None, error
    print(f"check    {args.baseline_files} files: oemkit {ours:.3f} s, JsonStrictValidator "
          f"{theirs:.2f} s (ratio {theirs / ours:.0f}x)")

    if not args.skip_e2e:
        end_to_end(args.files)


def end_to_end(n: int) -> None:
    import shutil

    from oemkit.crypto.keys import load_private_file
    from oemkit.release.bundle import build_bundle
    from oemkit.release.sign import sign_bundle
    from oemkit.release.trust import add_key, init_root
    from oemkit.verify.bundle import verify_bundle
    from oemkit.verify.trust import parse_root

    keys = HERE.parent / "keys-example"
    root = load_private_file(keys / "root.key", b"oemkit-example-insecure")
    bundle_key = load_private_file(keys / "bundle.key", b"oemkit-example-insecure")
    trust = add_key(parse_root(init_root([root])), bundle_key.public, ["bundle"], [root])
    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "spec"
        shutil.copytree(EXAMPLE, spec)
        for i in range(n):
            sub = spec / "data" / f"{i // 1000:02d}"
            sub.mkdir(parents=True, exist_ok=True)
            (sub / f"f{i:05d}.bin").write_bytes(i.to_bytes(4, "big") * 16)
        text = (spec / "bundle.yaml").read_text().replace("files: []", "files: [data]")
        (spec / "bundle.yaml").write_text(text)
        build, result = timed(build_bundle, spec, Path(tmp) / "out")
        sign_bundle(result.path, [bundle_key])
        verify, report = timed(verify_bundle, result.path, trust)
        assert report.ok, report.error
        print(f"end to end, {n} files: build {build:.2f} s, verify {verify:.2f} s")


if __name__ == "__main__":
    main()
