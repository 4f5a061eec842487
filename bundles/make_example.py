"""Regenerate the built-in example bundles from the scaffolder.

- ``bundles/example-v1/``: release 0.1.0, exactly what ``oemkit init example`` writes
  (config schema version 1);
- ``bundles/example/``: release 0.2.0, the same model with config schema version 2, the
  version-1 schema and a version-1 sample, and a declarative migration from 1 to 2
  (``threshold`` renamed to ``score_threshold``, a new ``max_batch`` with a default).

Run it after changing ``oemkit/release/scaffold.py``: ``python bundles/make_example.py``.
``tests/test_scaffold.py`` fails when the committed examples drift from this script.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
NAME = "example"
DESCRIPTION = "Tiny MLP classifier used by the oemkit demo"

MIGRATIONS = """\
# Declarative config migrations (no code): see docs/INSTALL.md for the operations.
migrations:
  - from: 1
    to: 2
    steps:
      - rename: {from: threshold, to: score_threshold}
      - set_default: {path: max_batch, value: 8}
"""

LICENSE = """\
# What the server does with its license (docs/SPEC.md#license). No license needed, so
# `oemkit demo` serves on a fresh machine; one that is attached but refused (revoked,
# other hardware, expired past grace) keeps the server from becoming ready.
license:
  required: false
  grace: serve
  invalid: refuse
  check_interval_s: 600
"""

README_LICENSE = """
## License policy

`bundle.yaml`'s `license:` section (docs/SPEC.md#license) says `required: false, grace:
serve, invalid: refuse`: the server needs no license, so `oemkit demo` serves on a fresh
machine; a license that is attached (or passed with `--license`) is checked at start, every
600 s and on SIGHUP: valid or in grace (with a warning) it serves, refused (revoked, bound
to other hardware, expired past grace) the server is never ready and `/v2/health/ready`
answers 503 with the code.
"""

SAMPLE_V1 = {"labels": ["cat", "dog", "bird"], "schema_version": 1, "threads": 2,
             "threshold": 0.8}


def _dump(path: Path, doc: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def make_v2(dest: Path) -> None:
    """Turn a fresh scaffold of the example into release 0.2.0 (config version 2)."""
    config_dir = dest / "config"
    v1_schema = json.loads((config_dir / "config.schema.json").read_text())
    _dump(config_dir / "v1.schema.json", v1_schema)
    v2_schema = json.loads(json.dumps(v1_schema))
    v2_schema["$id"] = v2_schema["$id"].replace("/v1.json", "/v2.json")
    props = v2_schema["properties"]
    props["schema_version"] = {"const": 2}
    props["score_threshold"] = props.pop("threshold")
    props["max_batch"] = {"type": "integer", "minimum": 1, "maximum": 64}
    v2_schema["required"] = ["schema_version", "score_threshold", "labels", "threads",
                             "max_batch"]
    _dump(config_dir / "config.schema.json", v2_schema)
    config = json.loads((config_dir / "config.json").read_text())
    config["schema_version"] = 2
    config["score_threshold"] = config.pop("threshold")
    config["max_batch"] = 8
    _dump(config_dir / "config.json", config)
    _dump(config_dir / "samples" / "v1.json", SAMPLE_V1)
    (config_dir / "migrations.yaml").write_text(MIGRATIONS, encoding="utf-8")
    spec = (dest / "bundle.yaml").read_text()
    spec = spec.replace("version: 0.1.0", "version: 0.2.0")
    spec = spec.replace("  version: 1\n", "  version: 2\n  history:\n    - version: 1\n"
                        "      schema: config/v1.schema.json\n"
                        "      samples: [config/samples/v1.json]\n"
                        "  migrations: config/migrations.yaml\n")
    start = spec.index("# What the server does with its license")
    spec = spec[:start] + LICENSE
    (dest / "bundle.yaml").write_text(spec, encoding="utf-8")
    readme = (dest / "README.md").read_text(encoding="utf-8").replace(
        " The commented `license:` section shows the default license policy:\nno license "
        "needed.\n", "\n")
    (dest / "README.md").write_text(readme + README_LICENSE, encoding="utf-8")


def write_examples(root: Path) -> None:
    """Write example-v1/ and example/ under ``root`` (atomically replacing each)."""
    try:
        from oemkit.release.scaffold import scaffold_bundle
    except ImportError:  # a source checkout without oemkit installed
        sys.path.insert(0, str(HERE.parent / "src"))
        from oemkit.release.scaffold import scaffold_bundle

    scaffold_bundle(NAME, root / f"{NAME}-v1", force=True, description=DESCRIPTION)
    staging = Path(tempfile.mkdtemp(dir=root, prefix=".example-"))
    try:
        scaffold_bundle(NAME, staging / NAME, description=DESCRIPTION)
        make_v2(staging / NAME)
        old = root / NAME
        if old.exists():
            shutil.rmtree(old)
        (staging / NAME).rename(old)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def main() -> int:
    write_examples(HERE)
    for folder in (f"{NAME}-v1", NAME):
        for path in sorted((HERE / folder).rglob("*")):
            if path.is_file():
                print(path.relative_to(HERE).as_posix())
    return 0


if __name__ == "__main__":
    sys.exit(main())
