"""Issue 13, area ``runtime``: a signed manifest's runtime section (class 6), config sections,
migrations and schemas (class 8, config part), ``migrate plan/test`` without ``--trust``
(class 3, migrate part), Windows look-alike names (Low).

Bundles are validly signed by the trusted example key, so the attack is the only thing
wrong with them: verify must refuse what build would never write (E_MANIFEST_INVALID),
and the migrate commands must end every hostile config in a coded error.
"""

from __future__ import annotations

import json
import tarfile
from collections.abc import Callable, Sequence
from typing import Any

from helpers import entry, regular, tar_bytes
from hostile.make_corpus import (
    BLOCK,
    FILES,
    SPEC_BASE,
    Corpus,
    Forge,
    zero_bomb,
    zstd,
)
from oemkit.crypto.keys import PrivateKeyInfo
from oemkit.models.manifest import FileEntry

SCHEMA_V2 = {"type": "object", "required": ["schema_version", "port"],
             "properties": {"schema_version": {"const": 2}, "port": {"type": "integer"}}}
SCHEMA_V1 = {"type": "object", "required": ["schema_version", "server_port"]}
MIGRATIONS = ("migrations:\n  - from: 1\n    to: 2\n    steps:\n"
              "      - rename: {from: server_port, to: port}\n")
CONFIG_V2 = {"schema_version": 2, "port": 80}
SAMPLE_V1 = {"schema_version": 1, "server_port": 80}
#: The host config ``migrate plan`` migrates (a v1 config).
HOST_CONFIG = json.dumps(SAMPLE_V1)
SECTION = {"file": "config/config.json", "schema": "config/schema.json", "version": 2,
           "migrations": "config/migrations.yaml",
           "history": [{"version": 1, "schema": "config/v1.schema.json",
                        "samples": ["config/v1.json"]}]}
PLAN = ["migrate", "plan", "--config", "{work}/config.json", "--to", "{corpus}/{file}",
        "--json"]
TEST = ["migrate", "test", "{corpus}/{file}", "--json"]
MIB_600 = 600 << 20


def _doc(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True).encode()


def config_files(*, migrations: str = MIGRATIONS, schema: Any = SCHEMA_V2
                 ) -> list[tuple[str, bytes, int]]:
    """The forged bundle's files plus a v2 config, its schemas, migrations and a v1 sample."""
    files = [*FILES,
             ("config/config.json", _doc(CONFIG_V2), 0o644),
             ("config/migrations.yaml", migrations.encode(), 0o644),
             ("config/schema.json", _doc(schema) if not isinstance(schema, bytes) else schema,
              0o644),
             ("config/v1.json", _doc(SAMPLE_V1), 0o644),
             ("config/v1.schema.json", _doc(SCHEMA_V1), 0o644)]
    return sorted(files, key=lambda f: f[0].encode())


def runtime(**fields: Any) -> Callable[[dict[str, Any]], None]:
    """A manifest edit setting runtime fields."""
    def edit(doc: dict[str, Any]) -> None:
        doc["runtime"].update(fields)
    return edit


def config_bundle(forge: Forge, section: Any = None, **kw: Any) -> bytes:
    """A signed bundle whose runtime.config is ``section`` (default: a valid one)."""
    files = kw.pop("files", None) or config_files()
    return forge.bundle(files=files, manifest_edit=runtime(
        config=SECTION if section is None else section), **kw)


def deep_path_migrations(levels: int) -> str:
    path = ".".join(["a"] * levels)
    return MIGRATIONS + f"      - set_default: {{path: {path}, value: 1}}\n"


def pax_bomb_bundle(forge: Forge) -> bytes:
    """A 28 KiB config bundle whose inner tar starts with a PAX header claiming 600 MiB
    (stdlib tarfile reads it whole: 648 MiB in the review)."""
    info = tarfile.TarInfo("a.txt")
    info.size = MIB_600
    info.type = tarfile.XHDTYPE
    header = info.tobuf(format=tarfile.USTAR_FORMAT)
    return forge.bundle(files=config_files(), payload=zero_bomb(header, MIB_600 + BLOCK),
                        manifest_edit=runtime(config=SECTION))


def cases(c: Corpus, forge: Forge, keys: dict[str, PrivateKeyInfo]) -> None:
    def bundle(file: str, tries: str, data: bytes, code: str = "E_MANIFEST_INVALID") -> None:
        c.add(f"review-runtime-{file}.oemb", "bundle", tries, data, code, 1)

    def cli(file: str, tries: str, data: bytes, code: str | None, exit_code: int,
            command: Sequence[str], *, rss: bool = False,
            setup: dict[str, Any] | None = None) -> None:
        c.add(f"review-runtime-{file}.oemb", "cli", tries, data, code, exit_code,
              command=list(command), rss=rss, setup=setup)

    host = {"files": {"config.json": HOST_CONFIG}}

    # ---- class 6: verify enforces what build enforces about the runtime section
    bundle("entrypoint-absolute", "a signed runtime.entrypoint /bin/sh (install and smoke "
           "would run that host file)", forge.bundle(manifest_edit=runtime(
               entrypoint="/bin/sh")))
    bundle("entrypoint-dotdot", "a signed runtime.entrypoint ../../../usr/bin/python3",
           forge.bundle(manifest_edit=runtime(entrypoint="../../../usr/bin/python3")))
    bundle("entrypoint-unlisted", "a signed runtime.entrypoint bin/other that is not a "
           "file of the bundle", forge.bundle(manifest_edit=runtime(entrypoint="bin/other")))
    bundle("model-absolute", "a signed runtime.model /dev/zero",
           forge.bundle(manifest_edit=runtime(model="/dev/zero")))
    bundle("model-unlisted", "a signed runtime.model model/other.onnx that is not a file "
           "of the bundle", forge.bundle(manifest_edit=runtime(model="model/other.onnx")))
    bundle("profile-host-path", "a signed runtime.profiles entry /etc/oemkit/evil.yaml "
           "(install's smoke would load that host file)", forge.bundle(
               manifest_edit=runtime(profiles=["/etc/oemkit/evil.yaml"])))
    bundle("profile-yaml-name", "a signed runtime.profiles entry evil.yaml (a name that "
           "the profile loader would read from the working directory)",
           forge.bundle(manifest_edit=runtime(profiles=["evil.yaml"])))
    bundle("golden-atol-text", "a signed runtime.golden.atol \"text\" (install crashed on "
           "float())", forge.bundle(manifest_edit=runtime(
               golden={"inputs": "a.txt", "outputs": "a.txt", "atol": "text"})))
    manifest = dict(forge.parts())["oemkit-bundle.json"]
    bundle("mode-float", "a file mode written 420.0 (verified before, then unpack crashed "
           "on TypeError)", forge.bundle(manifest_bytes=manifest.replace(
               b'"mode":420', b'"mode":420.0')))
    bundle("runtime-unknown-field", "a signed runtime section with a field build never "
           "writes (hook)", forge.bundle(manifest_edit=runtime(hook="sh -c id")))
    bundle("migrations-reserved", "a signed runtime.migrations that is not [] (reserved)",
           forge.bundle(manifest_edit=runtime(migrations=[{"from": 1, "to": 2}])))

    # ---- class 8: malformed config sections (signed) are refused by verify ...
    bundle("config-version-missing", "a signed runtime.config without version (install "
           "crashed with KeyError)", config_bundle(forge, {"file": "config/config.json",
                                                          "schema": "config/schema.json"}))
    bundle("config-history-not-a-list", "a signed runtime.config.history that is an object",
           config_bundle(forge, {**SECTION, "history": {"version": 1}}))
    bundle("config-file-outside", "a signed runtime.config.file ../../etc/app/config.json",
           config_bundle(forge, {**SECTION, "file": "../../etc/app/config.json"}))
    bundle("config-history-current-version", "a signed history entry for the current "
           "version (it would replace the current schema)",
           config_bundle(forge, {**SECTION, "history": [{"version": 2,
                                                         "schema": "config/v1.schema.json"}]}))
    # ... and by migrate plan/test, which read without --trust
    cli("migrate-plan-config-malformed", "migrate plan (no --trust) to a bundle whose "
        "runtime.config has no version (was KeyError)", config_bundle(
            forge, {"file": "config/config.json", "schema": "config/schema.json"}),
        "E_MANIFEST_INVALID", 1, PLAN, setup=host)
    cli("migrate-test-config-malformed", "migrate test (no --trust) of a bundle whose "
        "runtime.config.history holds a string (was TypeError)", config_bundle(
            forge, {**SECTION, "history": ["v1"]}), "E_MANIFEST_INVALID", 1, TEST)
    cli("migrate-plan-control", "control: migrate plan (no --trust) of a v1 host config to "
        "a valid config bundle", config_bundle(forge), None, 0, PLAN, setup=host)
    cli("migrate-test-control", "control: migrate test (no --trust) of a valid config "
        "bundle", config_bundle(forge), None, 0, TEST)

    # ---- migrations and schemas the host must not crash on
    deep = config_files(migrations=deep_path_migrations(5000))
    cli("migrate-test-path-5000-levels", "migrate test of a bundle whose migration sets a "
        "5,000-level path (the schema library crashed on the result)",
        config_bundle(forge, files=deep), "E_MIGRATION_INVALID", 3, TEST)
    steps_not_list = MIGRATIONS.replace(
        "    steps:\n      - rename: {from: server_port, to: port}\n", "    steps: 5\n")
    cli("migrate-test-steps-not-a-list", "migrate test of a bundle whose migration's steps "
        "is the number 5", config_bundle(forge, files=config_files(
            migrations=steps_not_list)), "E_MIGRATION_INVALID", 3, TEST)
    cli("migrate-test-empty-separator", "migrate test of a bundle whose split step has an "
        "empty separator (str.split raised ValueError)",
        config_bundle(forge, files=config_files(migrations=MIGRATIONS + (
            "      - split: {path: port, into: [h, p], separator: ''}\n"))),
        "E_MIGRATION_INVALID", 3, TEST)
    cli("migrate-test-schema-remote-ref", "migrate test of a bundle whose config schema "
        "$refs http://… (jsonschema-rs would fetch it)", config_bundle(
            forge, files=config_files(schema={"$ref": "http://198.51.100.7/schema.json"})),
        "E_CONFIG_SCHEMA", 3, TEST)
    cli("migrate-test-schema-host-file-ref", "migrate test of a bundle whose config schema "
        "$refs file:///etc/passwd (jsonschema-rs would read the host file)", config_bundle(
            forge, files=config_files(schema={"$ref": "file:///etc/passwd"})),
        "E_CONFIG_SCHEMA", 3, TEST)
    cli("migrate-test-schema-not-a-schema", "migrate test of a bundle whose config schema "
        "is a JSON list", config_bundle(forge, files=config_files(schema=[1])),
        "E_CONFIG_SCHEMA", 3, TEST)

    # ---- class 3: the unverified payload reader is the verifier's, bounded
    cli("migrate-plan-pax-600mib", "migrate plan (no --trust) to a 28 KiB bundle whose "
        "inner tar opens with a PAX header claiming 600 MiB (stdlib tarfile: 648 MiB)",
        pax_bomb_bundle(forge), "E_PAYLOAD_BOMB", 1, PLAN, rss=True, setup=host)
    big = [entry(p, d, m) for p, d, m in config_files()]
    big = [e if e.path != "config/config.json" else FileEntry(e.path, MIB_600, e.sha256, e.mode)
           for e in big]
    cli("migrate-test-config-declared-600mib", "migrate test of a bundle whose manifest "
        "declares its config file as 600 MiB (refused before the payload is read)",
        config_bundle(forge, entries=big), "E_CONFIG_INVALID", 3, TEST, rss=True)
    tar_cut = zstd(tar_bytes([regular(p, d, m) for p, d, m in config_files()])[:1500])
    cli("migrate-test-payload-cut-short", "migrate test of a bundle whose inner tar stops "
        "mid-file (the stdlib reader ran on into the signature members)",
        config_bundle(forge, payload=tar_cut), "E_PAYLOAD_CORRUPT", 1, TEST)

    # ---- Low: Windows look-alike names, at verify and at build
    look_alike = sorted([*FILES, ("bin/run.", b"#!/bin/sh\necho evil\n", 0o755)],
                        key=lambda f: f[0].encode())
    bundle("windows-trailing-dot", "bin/run beside bin/run. (Windows drops the dot: one "
           "overwrites the other)", forge.bundle(files=look_alike))
    reserved = sorted([*FILES, ("logs/nul.txt", b"x\n", 0o644)], key=lambda f: f[0].encode())
    bundle("windows-reserved-name", "a payload file logs/nul.txt (a device on Windows)",
           forge.bundle(files=reserved))
    c.add("review-runtime-spec-windows-trailing-dot.yaml", "spec", "a spec packing a "
          "directory holding run.bat and run.bat.", (SPEC_BASE + "files: [extra]\n").encode(),
          "E_SPEC_PATH", 3, setup={"files": {"extra/run.bat": "echo a\n",
                                             "extra/run.bat.": "echo b\n"}})
    config_spec = SPEC_BASE + (
        "config:\n  file: config/config.json\n  schema: config/schema.json\n  version: 2\n"
        "  migrations: config/migrations.yaml\n")
    c.add("review-runtime-spec-migration-path-5000-levels.yaml", "spec", "build of a spec "
          "whose migration sets a 5,000-level path (crashed in the schema library)",
          config_spec.encode(), "E_MIGRATION_INVALID", 3, setup={"files": {
              "config/config.json": json.dumps(CONFIG_V2),
              "config/schema.json": json.dumps(SCHEMA_V2),
              "config/migrations.yaml": deep_path_migrations(5000)}})

