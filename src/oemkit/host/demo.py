"""`oemkit demo`: the whole release path on the built-in example, with the example keys.

Builds ``bundles/example``, creates a trust root from ``keys-example`` (root key, plus the
bundle key for bundle signing), signs, verifies, and leaves the bundle and
``trust-root.json`` in the output directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from oemkit._fs import atomic_write_bytes
from oemkit.errors import EnvironmentProblem

EXAMPLE_PASSPHRASE = b"oemkit-example-insecure"


def example_paths() -> tuple[Path, Path]:
    """(example spec directory, example keys directory) from a checkout or the wheel."""
    here = Path(__file__).resolve()
    candidates = [here.parents[3], here.parents[1] / "_examples"]
    for base in candidates:
        spec, keys = base / "bundles" / "example", base / "keys-example"
        if (spec / "bundle.yaml").is_file() and (keys / "bundle.key").is_file():
            return spec, keys
    raise EnvironmentProblem(
        "E_NO_EXAMPLE", "the built-in example bundle is not installed",
        hint="the example ships in the oemkit wheel (oemkit/_examples) and in a source "
             "checkout; this installation lacks it: reinstall oemkit "
             "(pip install --force-reinstall oemkit, or pip install -e . in a checkout)")


def run_demo(out: Path) -> dict[str, Any]:
    from oemkit.crypto.keys import load_private_file
    from oemkit.release.bundle import build_bundle
    from oemkit.release.sign import sign_bundle
    from oemkit.release.trust import add_key, init_root
    from oemkit.verify.bundle import verify_bundle
    from oemkit.verify.trust import parse_root

    spec, keys_dir = example_paths()
    root_key = load_private_file(keys_dir / "root.key", EXAMPLE_PASSPHRASE)
    bundle_key = load_private_file(keys_dir / "bundle.key", EXAMPLE_PASSPHRASE)
    result = build_bundle(spec / "bundle.yaml", out)
    v1 = init_root([root_key], names=["example-root"])
    v2 = add_key(parse_root(v1), bundle_key.public, ["bundle"], [root_key], name="example-bundle")
    trust_path = Path(out) / "trust-root.json"
    atomic_write_bytes(trust_path, v2)
    sign_bundle(result.path, [bundle_key])
    report = verify_bundle(result.path, trust_path)
    return {"bundle": result.path, "trust_root": trust_path, "report": report}
