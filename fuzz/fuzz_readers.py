"""Fuzz the readers that read a bundle without a trust decision (UNVERIFIED): ``inspect``,
``sbom``, ``sbom diff``, ``provenance``, ``migrate plan`` and ``migrate test`` without
``--trust``. Anyone can make the bundles these commands read, so each must answer any
bytes with an OemkitError, never another exception.

Library entry points: ``oemkit.verify.bundle.inspect_bundle``,
``oemkit.report.sbom.read_member_json`` (then ``component_rows`` and ``sbom_diff``, what
``sbom`` and ``sbom diff`` print), ``oemkit.host.migrate.bundle_configs`` without trust
(then ``upgrade_path_test``, what ``migrate test`` runs, and ``plan`` of the bundle's own
default config and samples, what ``migrate plan`` runs).

Modes (first byte of the input, modulo 12):

0. the bytes are the whole bundle, read by ``inspect_bundle``;
1. the bytes are the whole bundle, its SBOM read (``read_member_json``), its rows listed
   and diffed against the control SBOM both ways;
2. the bytes are the whole bundle, its provenance read;
3. the bytes are the whole bundle, its configs read (``bundle_configs``), then
   ``upgrade_path_test`` and a ``plan`` of every sample;
4. the bytes are the manifest of the *config bundle* (the control bundle plus
   ``bundles/example/config``, its manifest declaring that config section): ``inspect``,
   then the configs as in mode 3;
5. the bytes are the SBOM member: read, rows, diff;
6. the bytes are the provenance member: read;
7. the bytes are the config bundle's inner payload tar (compressed here): configs;
8. the bytes are the config bundle's ``payload.tar.zst`` itself: configs;
9. the bytes are ``config/migrations.yaml`` in the config bundle: configs;
10. the bytes are the manifest's ``runtime.config`` value, spliced raw into the config
    bundle's manifest: ``inspect``, then configs;
11. the bytes are a host config file (``migrate plan --config FILE``): ``read_config``,
    then ``plan`` against the config bundle.

Bundles are forged with the corpus keys (``hostile.make_corpus.Forge``); for these readers
the signature does not matter (nothing is believed), but a valid one keeps the bytes
realistic. Each input is written to one scratch file (the readers take a path).

Run: ``python fuzz/run.py readers SECONDS`` (or ``nox -s fuzz -- SECONDS``).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, corpus_files, main, pick

from helpers import EXAMPLE_CONFIG_FILES as CONFIG_FILES
from helpers import EXAMPLE_CONFIG_SECTION as CONFIG_SECTION

MODES = 12
_S: dict[str, Any] = {}
EXAMPLE = REPO / "bundles" / "example"
MARK = b'"runtime.config"'


def setup() -> None:
    if _S:
        return
    import atexit
    import shutil
    import tempfile

    import zstandard

    from hostile import make_corpus
    from oemkit._canonical import canonical_json
    from oemkit.host import migrate
    from oemkit.models import config as config_model
    from oemkit.models.manifest import PROVENANCE, SBOM
    from oemkit.report.sbom import component_rows, read_member_json, sbom_diff
    from oemkit.verify.bundle import inspect_bundle

    keys = make_corpus.load_keys()
    forge = make_corpus.Forge(keys)
    files = sorted([*make_corpus.FILES,
                    *((p, (EXAMPLE / p).read_bytes(), 0o644) for p in CONFIG_FILES)],
                   key=lambda f: f[0].encode())

    def with_config(doc: dict[str, Any]) -> None:
        doc["runtime"]["config"] = CONFIG_SECTION

    def with_mark(doc: dict[str, Any]) -> None:
        doc["runtime"]["config"] = "runtime.config"

    config_parts = forge.parts(files, manifest_edit=with_config)
    marked = dict(forge.parts(files, manifest_edit=with_mark))["oemkit-bundle.json"]
    assert marked.count(MARK) == 1
    folder = Path(tempfile.mkdtemp(prefix="oemkit-fuzz-readers-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    _S.update(
        forge=forge, files=files, with_config=with_config, outer=make_corpus.outer,
        tar=lambda entries: make_corpus.tar_bytes(
            [make_corpus.regular(p, d, m) for p, d, m in entries]),
        zstd=zstandard.ZstdCompressor(level=1), config_parts=config_parts,
        config=dict(config_parts), marked=marked, canonical=canonical_json,
        control=dict(forge.parts()), inspect=inspect_bundle, read=read_member_json,
        rows=component_rows, diff=sbom_diff, migrate=migrate, config_model=config_model, sbom=SBOM,
        provenance=PROVENANCE, bundle=folder / "fuzz.oemb", host_config=folder / "config.json",
    )
    _S["control_sbom"] = read_member_json(_write(outer_bytes(_S["control"])), SBOM).doc
    run(bytes([3]) + outer_bytes(config_parts))  # the harness itself works (raises if not)


def outer_bytes(parts: Any) -> bytes:
    return bytes(_S["outer"](list(parts.items()) if isinstance(parts, dict) else parts))


def _write(data: bytes) -> Path:
    path: Path = _S["bundle"]
    path.write_bytes(data)
    return path


def _sbom(path: Path) -> None:
    doc = _S["read"](path, _S["sbom"]).doc
    _S["rows"](doc)
    _S["diff"](doc, _S["control_sbom"])
    _S["diff"](_S["control_sbom"], doc)


def _configs(path: Path) -> None:
    migrate, config_model = _S["migrate"], _S["config_model"]
    configs = migrate.bundle_configs(path)
    config_model.upgrade_path_test(configs)
    for version in sorted(configs.samples):
        for name, sample in configs.samples[version]:
            config_model.plan(sample, configs, name)


def _config_bundle(**kw: Any) -> bytes:
    forge = _S["forge"]
    kw.setdefault("manifest_edit", _S["with_config"])
    return outer_bytes(forge.parts(_S["files"], **kw))


def run(data: bytes) -> Any:
    setup()
    mode, rest = pick(data, MODES)
    if mode in (0, 1, 2, 3):
        path = _write(rest)
        if mode == 0:
            return _S["inspect"](path)
        if mode == 1:
            return _sbom(path)
        if mode == 2:
            return _S["read"](path, _S["provenance"])
        return _configs(path)
    if mode in (4, 10):
        manifest = rest if mode == 4 else _S["marked"].replace(MARK, rest)
        path = _write(_config_bundle(manifest_bytes=manifest))
        _S["inspect"](path)
        return _configs(path)
    if mode == 5:
        return _sbom(_write(outer_bytes(_S["forge"].parts(sbom=rest))))
    if mode == 6:
        return _S["read"](_write(outer_bytes(_S["forge"].parts(provenance_bytes=rest))),
                          _S["provenance"])
    if mode == 7:
        return _configs(_write(_config_bundle(payload=_S["zstd"].compress(rest))))
    if mode == 8:
        return _configs(_write(_config_bundle(payload=rest)))
    if mode == 9:
        files = [(p, rest if p == "config/migrations.yaml" else d, m)
                 for p, d, m in _S["files"]]
        return _configs(_write(outer_bytes(_S["forge"].parts(
            files, manifest_edit=_S["with_config"]))))
    migrate, config_model = _S["migrate"], _S["config_model"]
    _S["host_config"].write_bytes(rest)
    configs = migrate.bundle_configs(_write(outer_bytes(_S["config_parts"])))
    return config_model.plan(migrate.read_config(_S["host_config"]), configs, "config.json")


def check(data: bytes) -> None:
    """Replay one input (tests): an OemkitError is fine, anything else raises."""
    from _common import guarded

    guarded(run)(data)


def seeds() -> list[bytes]:
    setup()
    control, config = _S["control"], _S["config"]
    out = []
    bundles = [d for name, d in corpus_files("bundle", "cli") if name.endswith(".oemb")]
    for mode in (0, 1, 2, 3):
        out += [bytes([mode]) + d for d in bundles]
    out += [bytes([3]) + outer_bytes(_S["config_parts"]),
            bytes([4]) + config["oemkit-bundle.json"],
            bytes([5]) + control["sbom.cdx.json"],
            bytes([6]) + control["provenance.intoto.json"],
            bytes([7]) + _S["tar"](_S["files"]),
            bytes([8]) + config["payload.tar.zst"],
            bytes([9]) + (EXAMPLE / "config" / "migrations.yaml").read_bytes(),
            bytes([10]) + _S["canonical"](CONFIG_SECTION),
            bytes([11]) + (EXAMPLE / "config" / "samples" / "v1.json").read_bytes(),
            bytes([11]) + (EXAMPLE / "config" / "config.json").read_bytes()]
    return out


if __name__ == "__main__":
    main("readers", setup, run)
