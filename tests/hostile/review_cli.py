"""Issue 13, the command-line surface: commands that read a bundle without ``--trust``
(inspect, sbom, sbom diff, provenance) on bundles anyone can make, numeric options out of
range, usage errors and bad file arguments with ``--json``.

Every case runs with ``--json``: the corpus test checks exactly one JSON document on
stdout, the code, the exit status and that no traceback or E_INTERNAL appears. Terminal
safety (markup and escapes printed visibly, never raw) is asserted in
``test_review_cli.py`` on the same bundles.
"""

from __future__ import annotations

import json
from typing import Any

from hostile.make_corpus import Corpus, Forge, canonical_json, seeded_key
from oemkit.crypto.keys import PrivateKeyInfo

VALID = "{corpus}/control-bundle-valid.oemb"
#: A description that would close rich markup, then paint a fake green VERIFIED line over
#: the UNVERIFIED one (erase line, carriage return, colour) and reverse the rest (RLO).
HOSTILE_TEXT = "[/x] [bold red]x[/] \x1b[2K\r\x1b[1;32mVERIFIED\x1b[0m \u202eevil\x9b"
LICENSE_ISSUE = ["license", "issue", "--key", "{repo}/keys-example/license.key",
                 "--customer", "acme", "--customer-name", "ACME", "--product", "vision",
                 "--expires", "2099-01-01", "--out", "{tmp}/issued.lic", "--json"]
DIGITS_400 = "9" * 400


def _sbom_edit(forge: Forge, edit: Any) -> bytes:
    """The SBOM Forge would write, edited (still canonical JSON)."""
    parts = dict(forge.parts())
    doc = json.loads(parts["sbom.cdx.json"])
    edit(doc)
    return canonical_json(doc)


def cases(c: Corpus, forge: Forge, keys: dict[str, PrivateKeyInfo]) -> None:
    def cli(file: str, tries: str, data: bytes, code: str | None, exit_code: int,
            command: list[str], setup: dict[str, Any] | None = None) -> None:
        c.add(file, "cli", tries, data, code, exit_code, command=command, setup=setup)

    def description(doc: dict[str, Any]) -> None:
        doc["description"] = HOSTILE_TEXT

    # --- unverified readers on hostile bundles
    hostile_desc = forge.bundle(manifest_edit=description)
    cli("review-cli-inspect-markup-ansi-description.oemb",
        "inspect (no --trust) of a bundle whose description holds rich markup ([/x]), ANSI "
        "escapes and CR painting a fake VERIFIED line, and a bidi override: printed "
        "escaped, one JSON document", hostile_desc, None, 0,
        ["inspect", "{corpus}/{file}", "--json"])
    cli("review-cli-inspect-markup-rejected-with-trust.oemb",
        "inspect --trust of a bundle signed by a key the root does not know, whose "
        "description holds markup: REJECTED with the verifier's code, one JSON document",
        forge.bundle(manifest_edit=description, signers=[seeded_key(1313, "stranger")]),
        "E_SIGNATURE_UNTRUSTED", 1,
        ["inspect", "{corpus}/{file}", "--trust", "{corpus}/trust-root.json", "--json"])
    cli("review-cli-sbom-is-a-list.oemb",
        "sbom (no --trust) of a bundle whose SBOM is a JSON list (was AttributeError)",
        forge.bundle(sbom=b"[]"), "E_SBOM_INVALID", 1, ["sbom", "{corpus}/{file}", "--json"])
    cli("review-cli-sbom-diff-new-is-a-list.oemb",
        "sbom diff of a valid bundle and one whose SBOM is a list (was AttributeError)",
        forge.bundle(sbom=b"[]"), "E_SBOM_INVALID", 1,
        ["sbom", "diff", VALID, "{corpus}/{file}", "--json"])
    cli("review-cli-sbom-components-not-a-list.oemb",
        "sbom of a CycloneDX document whose components is a string: the verifier's schema "
        "check, not a crash in the table",
        forge.bundle(sbom=_sbom_edit(forge, lambda d: d.update(components="x"))),
        "E_SBOM_SCHEMA", 1, ["sbom", "{corpus}/{file}", "--json"])
    cli("review-cli-sbom-component-not-an-object.oemb",
        "sbom diff where one SBOM's components are numbers",
        forge.bundle(sbom=_sbom_edit(forge, lambda d: d.update(components=[1, 2]))),
        "E_SBOM_SCHEMA", 1, ["sbom", "diff", "{corpus}/{file}", VALID, "--json"])
    cli("review-cli-sbom-markup-names.oemb",
        "sbom of a schema-valid SBOM whose names hold markup and escapes: printed escaped",
        forge.bundle(sbom=_sbom_edit(forge, lambda d: d["metadata"]["component"].update(
            name=HOSTILE_TEXT))), None, 0, ["sbom", "{corpus}/{file}", "--json"])
    cli("review-cli-provenance-is-a-list.oemb",
        "provenance (no --trust) of a bundle whose provenance is a JSON list",
        forge.bundle(provenance_bytes=b"[]"), "E_PROVENANCE_INVALID", 1,
        ["provenance", "{corpus}/{file}", "--json"])

    def predicate_list(statement: dict[str, Any]) -> None:
        statement["predicate"]["buildDefinition"] = []

    cli("review-cli-provenance-build-definition-list.oemb",
        "provenance whose buildDefinition is a list (the SLSA shape is checked before "
        "printing)", forge.bundle(provenance_edit=predicate_list), "E_PROVENANCE_INVALID",
        1, ["provenance", "{corpus}/{file}", "--json"])

    def markup_builder(statement: dict[str, Any]) -> None:
        statement["predicate"]["runDetails"]["builder"]["id"] = HOSTILE_TEXT
        statement["subject"][0]["name"] = "[/x]\x1b]0;title\x07"

    cli("review-cli-provenance-markup-builder.oemb",
        "provenance whose builder id and subject name hold markup and OSC/ANSI escapes",
        forge.bundle(provenance_edit=markup_builder), None, 0,
        ["provenance", "{corpus}/{file}", "--json"])

    # --- file arguments checked by oemkit, not click
    note = b"a case made by its command line; this file is not read\n"
    cli("review-cli-inspect-directory.txt", "inspect of a directory: E_NOT_A_FILE",
        note, "E_NOT_A_FILE", 3, ["inspect", "{work}/adir", "--json"],
        setup={"dirs": ["adir"]})
    cli("review-cli-provenance-missing.txt", "provenance of a file that does not exist",
        note, "E_NOT_FOUND", 3, ["provenance", "{tmp}/absent.oemb", "--json"])

    # --- usage errors with --json: one E_USAGE document, exit 2
    cli("review-cli-usage-missing-argument.txt", "verify --json without its bundle",
        note, "E_USAGE", 2, ["verify", "--json"])
    cli("review-cli-usage-unknown-option.txt", "an unknown option with --json",
        note, "E_USAGE", 2, ["inspect", VALID, "--no-such-option", "--json"])
    cli("review-cli-usage-sbom-diff-arity.txt", "sbom diff with one bundle",
        note, "E_USAGE", 2, ["sbom", "diff", VALID, "--json"])

    # --- numeric options: one parser, bounded digits and range, E_USAGE
    numbers = [
        ("limit-superscript", "--limit seats=² (str.isdigit() accepts it; was E_INTERNAL)",
         [*LICENSE_ISSUE, "--limit", "seats=²"]),
        ("limit-400-digits", "--limit with 400 digits", [*LICENSE_ISSUE, "--limit",
                                                          f"seats={DIGITS_400}"]),
        ("license-seq-above-2-53", "license issue --seq 2^53 (was E_CANONICAL, exit 3)",
         [*LICENSE_ISSUE, "--seq", str(1 << 53)]),
        ("license-grace-400-digits", "license issue --grace of 400 digits",
         [*LICENSE_ISSUE, "--grace", DIGITS_400 + "d"]),
        ("license-match-zero", "license issue --match 0", [*LICENSE_ISSUE, "--match", "0"]),
        ("crl-seq-400-digits", "crl issue --seq of 400 digits",
         ["crl", "issue", "--key", "{repo}/keys-example/crl.key", "--seq", DIGITS_400,
          "--out", "{tmp}/x.crl", "--json"]),
        ("crl-revoke-below-superscript", "crl issue --revoke id:³",
         ["crl", "issue", "--key", "{repo}/keys-example/crl.key", "--seq", "2",
          "--revoke", "acme:³", "--out", "{tmp}/x.crl", "--json"]),
        ("verify-max-files-400-digits", "verify --max-files of 400 digits",
         ["verify", VALID, "--trust", "{corpus}/trust-root.json", "--max-files", DIGITS_400,
          "--json"]),
        ("verify-max-member-negative", "verify --max-member-size -1",
         ["verify", VALID, "--trust", "{corpus}/trust-root.json", "--max-member-size", "-1",
          "--json"]),
        ("trust-threshold-400-digits", "trust set-threshold with 400 digits",
         ["trust", "set-threshold", "{corpus}/trust-root.json", "bundle", DIGITS_400,
          "--sign-with", "{repo}/keys-example/root.key", "--out", "{tmp}/r.json", "--json"]),
        ("build-source-date-epoch-huge", "build --source-date-epoch past year 9999",
         ["build", "{repo}/bundles/example", "--out", "{tmp}/out", "--source-date-epoch",
          str(1 << 60), "--json"]),
        ("sizing-headroom-nan", "sizing --headroom nan",
         ["sizing", VALID, "--headroom", "nan", "--json"]),
        ("sizing-target-qps-1e400", "sizing --target-qps 1e400 (infinite as a float)",
         ["sizing", VALID, "--target-qps", "1e400", "--json"]),
        ("sizing-batch-superscript", "sizing --batch 1,²",
         ["sizing", VALID, "--profile", "cpu-small", "--trust", "{corpus}/trust-root.json",
          "--batch", "1,²", "--out", "{tmp}/sizing", "--json"]),
        ("sizing-duration-400-digits", "sizing --duration of 400 digits (float inf)",
         ["sizing", VALID, "--profile", "cpu-small", "--trust", "{corpus}/trust-root.json",
          "--duration", DIGITS_400 + "s", "--out", "{tmp}/sizing", "--json"]),
    ]
    for name, tries, command in numbers:
        cli(f"review-cli-number-{name}.txt", tries, note, "E_USAGE", 2, command)
