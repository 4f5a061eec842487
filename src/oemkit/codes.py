"""The error registry: every ``E_`` code oemkit emits, with its family, exit code, meaning
and default hint (issue 14, step 3).

``REGISTRY`` maps a code to its :class:`Code`; :func:`lookup` finds one. A code has one
*family* (the :mod:`oemkit.errors` class it is raised with, hence its exit code). A code
that is legitimately raised with a second family today (a bad pinned trust root is bad
input, exit 3; the same problem in a carried root is a "no", exit 1) says so in ``also``,
with its ``reason``; tests/test_codes.py fails on any other second family.

:func:`scan` walks the source tree (whatever its layout) for every code literal and how it
is raised; :func:`markdown` renders docs/ERRORS.md from the registry and the scan.
Regenerate that file with::

    python -m oemkit.codes --markdown > docs/ERRORS.md

This module is import-cheap (no import beyond ``dataclasses`` at load time; the scanner
imports ``ast`` when called) and no command's hot path imports it:
``OemkitError.code_info()`` looks it up lazily.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import ast
    from collections.abc import Iterator
    from pathlib import Path

V, U, I, E = "VerificationError", "UsageError", "InputError", "EnvironmentProblem"  # noqa: E741
#: A document that does not parse (every ``oemkit.models`` parser raises it): an InputError,
#: so the registry counts it in that family (exit 3); a verifier restates it.
F = "FormatError"
#: The root class: raised directly only for an internal signal that never surfaces.
O = "OemkitError"  # noqa: E741
#: Not an exception class: emitted by the CLI's error guard (a crash, an interrupt).
X = "internal"

#: Exit code of each family (errors.py's ``exit_code`` of the class of that name).
FAMILY_EXIT: dict[str, int] = {V: 1, U: 2, I: 3, E: 4, O: 1}
#: Exit codes of the codes without an exception class.
INTERNAL_EXIT: dict[str, int] = {"E_INTERNAL": 70, "E_INTERRUPTED": 130}
#: The families in the order docs/ERRORS.md lists them.
FAMILY_ORDER = (V, U, I, E, O, X)


@dataclass(frozen=True)
class Code:
    """One error code: ``family`` is the errors.py class it is raised with (or
    ``"internal"``), ``exit_code`` that family's exit code; ``meaning`` is one line,
    ``hint`` the default hint (a raise site may say more). ``also`` lists the other
    families the code is raised with on purpose, ``reason`` says why."""

    name: str
    family: str
    exit_code: int
    meaning: str
    hint: str = ""
    also: tuple[str, ...] = ()
    reason: str = ""


def _c(name: str, family: str, meaning: str, hint: str = "", *,
       also: tuple[str, ...] = (), reason: str = "") -> Code:
    exit_code = INTERNAL_EXIT[name] if family == X else FAMILY_EXIT[family]
    return Code(name, family, exit_code, meaning, hint, also, reason)


_CODES = (
    _c("E_ALG_MISMATCH", V,
       "`alg` differs from the trust-root key's algorithm (`expected`/`actual` set)",
       "the file was tampered with (algorithm confusion)"),
    _c("E_ALREADY_INSTALLED", I,
       "`install`: `PREFIX/current` already names a slot",
       "use 'oemkit upgrade' to move to another release"),
    _c("E_ARMOR", V,
       "not ASCII; no/malformed/mislabelled armor block; bad base64 (§2)",
       "the file is damaged or not an oemkit document; ask for a fresh copy"),
    _c("E_BASE64", I,
       "payload or signature is not base64",
       "the file is damaged",
       also=(V,),
       reason="a file given to a command is bad input (3); a bundle member that is not base64 "
              "is a \"no\" (1, re-raised by verify)"),
    _c("E_BIND", E,
       "serve: the address cannot be bound (port in use, no permission, unknown host)",
       "choose another --port, or stop what holds it"),
    _c("E_BUDGET", V,
       "smoke checks `cold start`, `first inference`, `p95 latency (batch N)`, `peak RSS`, "
       "`served:ready`, `served:first inference`, `served:shutdown`: the figure is over the "
       "profile's budget",
       "this host is slower than the profile promises: run on hardware that meets it, or "
       "choose another --profile"),
    _c("E_BUNDLE_MISMATCH", V,
       "bundle digest not licensed",
       "use the licensed bundle or ask the vendor to add this one"),
    _c("E_BUSY", E,
       "another join is writing the same output",
       "wait for it to finish"),
    _c("E_CANONICAL", I,
       "a value has no RFC 8785 canonical JSON form (an integer beyond +-(2^53-1), a lone "
       "surrogate, a NaN); verifiers map it to their own code",
       "integers must lie within +-(2^53-1) and strings must be valid Unicode",
       also=(V,),
       reason="raised by the serialiser (3); verify re-raises it inside a bundle (1) and the "
              "license verifier maps it to E_CLAIMS_INVALID / E_CRL_INVALID"),
    _c("E_CLAIMS_INVALID", V,
       "claims payload is not UTF-8 JSON, has a BOM, duplicate keys, NaN, too deep",
       "the signer wrote malformed claims; ask the vendor to re-issue",
       also=(I,),
       reason="`license attach` reads the license unverified: no valid `license_id` is bad "
              "input (3), and `oemkit.models.license` raises it as a FormatError (3) to a "
              "library caller; a verified license is a \"no\" (1), as is issuing or reading "
              "claims verify would refuse (restated)"),
    _c("E_CLOCK_BEHIND", V,
       "host clock more than 1 h before a signed issue time",
       "set the host clock to the correct time (UTC)"),
    _c("E_CLOCK_ROLLBACK", V,
       "host clock more than 1 h before `last_seen`",
       "set the host clock to the correct time (UTC)"),
    _c("E_CONFIG_INVALID", I,
       "a config (or config-side JSON file) that is not strict JSON, or that fails its "
       "version's schema before or after migrating",
       "fix the config so it is strict JSON that matches its schema_version's schema, or "
       "restore it from a backup"),
    _c("E_CONFIG_SCHEMA", I,
       "a config schema that is not an object or boolean, is nested deeper than 64 levels, "
       "does not compile, or `$ref`s outside itself (never fetched or read)",
       "the bundle's config schema is malformed; the vendor must fix it and rebuild the "
       "bundle"),
    _c("E_CONFIG_VERSION", I,
       "migrate, install/upgrade (row `config`): no integer `schema_version`, a version the "
       "bundle does not know, or no schema for the target version",
       "give the config an integer schema_version this bundle knows; migrate a newer config "
       "with the newer release's bundle"),
    _c("E_CRIT_UNKNOWN", V,
       "`critical` names a claim this oemkit does not implement",
       "upgrade oemkit on this host to a version that supports it"),
    _c("E_CRL_INVALID", V,
       "a CRL's payload is not strict canonical integer-only JSON, or violates §8 (message "
       "prefix `revocation list:`)",
       "the CRL is damaged; get a fresh one from the vendor",
       also=(I,),
       reason="`oemkit.models.license` raises it as a FormatError (3) to a library caller; "
              "every command reads or issues a CRL through a verifier or issuer that restates "
              "it as a \"no\" (1)"),
    _c("E_CRL_ROLLBACK", V,
       "an explicitly given CRL is older than the one this host remembers",
       "use the newest revocation list from the vendor"),
    _c("E_CRL_STALE", V,
       "`min_crl_seq` is set and no CRL, or only an older one, is known",
       "bring the newest revocation list (--crl, or a newer bundle)"),
    _c("E_DEMO_SERVE", E,
       "demo: the example's server did not start, become ready, answer the golden inference "
       "or exit 0 on SIGTERM (the message names its log); or it answered other than the "
       "golden output",
       "run the server yourself to see why: oemkit serve BUNDLE --trust ROOT",
       also=(V,),
       reason="a host that cannot run the server is an environment problem (4); a wrong "
              "answer is a failed check (1)"),
    _c("E_DEST_IS_CWD", I,
       "`scaffold_bundle(force=True)`: the directory to replace is or contains the current "
       "directory (the CLI has no `--force`)",
       "run oemkit init from outside it, or empty it first"),
    _c("E_DEST_NOT_DIR", I,
       "`init --dir`, `unpack`, `deploy kubernetes --out` or `image --out` DEST exists and "
       "is not a directory",
       "choose another destination, or move the file that is in the way"),
    _c("E_DEST_NOT_EMPTY", I,
       "`init --dir`, `unpack`, `deploy kubernetes --out` or `image --out` DEST is not empty "
       "(without `--force`); `verify.layout.extract_for_layout`'s folders",
       "choose an empty destination or empty it first ('unpack' can replace it with --force)"),
    _c("E_DELTA_BASE", V,
       "`patch`, `upgrade --delta`: the delta was made against another OLD release (its "
       "manifest digest, a file it copies from, or a member the slot does not keep)",
       "apply it to the release it names, or get a delta made from the release you have"),
    _c("E_DELTA_COMPRESSOR", V,
       "`patch`: every rebuilt payload file matches NEW's manifest but this host's libzstd "
       "writes other archive bytes than the one that built NEW",
       "install the zstandard version the message names for oemkit, or ship the full bundle"),
    _c("E_DELTA_CORRUPT", V,
       "`patch`: a zstd frame of the delta's data does not decompress to the bytes its header "
       "describes (the file or member is named)",
       "the delta is damaged or was tampered with; obtain a fresh copy of it"),
    _c("E_DELTA_DIGEST", V,
       "`patch`: the delta's data member does not match the digest in its header",
       "the delta is damaged or was tampered with; obtain a fresh copy of it"),
    _c("E_DELTA_INVALID", V,
       "a delta file whose members or header are not what `oemkit delta` writes (fields, "
       "types, bounds, sources, ranges)",
       "the delta is damaged or was not written by oemkit delta; obtain a fresh copy",
       also=(I,),
       reason="`oemkit.models.delta` raises it as a FormatError (3) to a library caller; "
              "`patch` reads every delta through `release.patch.open_delta`, which restates "
              "it as a \"no\" (1)"),
    _c("E_DELTA_PAIR", I,
       "`delta --pair NEW=OLD` names a path that is not a payload file of that bundle",
       "name a NEW payload path, '=', and an OLD payload path (oemkit inspect lists them)"),
    _c("E_DELTA_RESULT", V,
       "`patch`: a payload file, a member or the whole bundle rebuilt from the delta is not "
       "what NEW's manifest or the delta records (the file is named)",
       "the delta is damaged or tampered with, or the OLD release was changed; nothing was "
       "written"),
    _c("E_DELTA_SAME", I,
       "`delta`: OLD and NEW are the same release (the same manifest)",
       "a delta needs two different releases; ship the bundle itself"),
    _c("E_DELTA_SIGNATURE", V,
       "`patch`: a delta signature that does not verify over its header, or signatures by no "
       "bundle key of the trust root",
       "sign the delta with a bundle key of the trust root the hosts pin (oemkit delta --key)"),
    _c("E_EVIDENCE_CLAIM", V,
       "`evidence verify`: a claim of the pack whose evidence no longer holds (the first one "
       "in table order is named); also an attestation, JUnit file, license or sizing document "
       "in a pack that no longer says what the claim says",
       "the evidence was changed, or the trust root no longer accepts it; the table lists "
       "every claim"),
    _c("E_EVIDENCE_DIGEST", V,
       "`evidence verify`: an artifact of the pack that does not match the digest the pack or "
       "the signed bundle metadata records",
       "the pack was edited after it was made"),
    _c("E_EVIDENCE_INPUT", I,
       "`evidence`: an attestation, JUnit file, license or sizing document that is not "
       "evidence for this bundle (another bundle, a failed run, a license that does not hold)",
       "pass what oemkit smoke, migrate test, license issue and sizing wrote for this bundle"),
    _c("E_EVIDENCE_INVALID", V,
       "`evidence verify`: the file is not an oemkit evidence pack (a DSSE envelope of one "
       "signature over an oemkit-evidence/v1 document)",
       "pass a .oeme file oemkit evidence wrote",
       also=(I,),
       reason="`oemkit.models.evidence` raises it as a FormatError (3) to a library caller; "
              "`report.evidence.read_pack` restates it as a \"no\" (1)"),
    _c("E_EVIDENCE_MISSING", V,
       "`evidence verify`: a claim names an artifact the pack does not carry",
       "the pack is damaged or was edited"),
    _c("E_EVIDENCE_SIGNATURE", V,
       "`evidence verify`: the pack's own signature does not verify, or is not by the key "
       "`--signer` pins",
       "obtain the original pack; check who made it"),
    _c("E_DEST_SYMLINK", I,
       "`unpack`, `deploy kubernetes`, `image`: DEST is a symbolic link, dangling or not; "
       "nothing is staged through it",
       "pass the directory the link points at, or remove the link"),
    _c("E_DOWNGRADE", V,
       "`upgrade` (row `version`): the bundle's version is older than the current slot's, "
       "without `--allow-downgrade`",
       "pass --allow-downgrade to go back on purpose"),
    _c("E_ENTITLEMENT", V,
       "`require_feature` / `--require-feature`: feature not granted",
       "ask the vendor for a license that includes this feature"),
    _c("E_ENVELOPE", V,
       "DSSE envelope or Sigstore bundle malformed (fields, mediaType, no DSSE, no "
       "signatures), or a signature member of more than 65,536 JSON values",
       "the file is damaged or not an oemkit document",
       also=(I,),
       reason="a DSSE envelope or Sigstore bundle read as an input of its own (a pinned root, "
              "a signature parsed before it is judged) is bad input (3); in a bundle, a "
              "license or a CRL it is a \"no\" (1)"),
    _c("E_ENV_MISMATCH", V,
       "declared environment differs or is missing",
       "set OEMKIT_ENV (or --env) to the licensed environment"),
    _c("E_EXPIRED", V,
       "effective time after `expires + grace_seconds`",
       "ask the vendor to renew the license"),
    _c("E_FINGERPRINT", I,
       "`--hardware` file is not UTF-8 JSON (duplicates, NaN…)",
       "create it on the customer host with 'oemkit license fingerprint --out FILE'"),
    _c("E_GOLDEN_INVALID", V,
       "smoke checks `run`, `golden`, `entrypoint`: golden inputs or outputs unreadable, "
       "or not matching the model's input names or shapes; build: a golden tensor whose "
       "name, dtype or shape the model's graph does not have (`field` golden.inputs or "
       "golden.outputs, `expected`/`actual` set)",
       "rebuild the bundle with valid golden data",
       also=(I,),
       reason="build refuses the spec's golden files (bad input, 3); in a built bundle smoke "
              "reports it as a failed check (1)"),
    _c("E_GOLDEN_MISMATCH", V,
       "smoke check `golden:NAME`/`entrypoint:NAME`/`served:golden:NAME`: output missing, of "
       "another shape or structure (a sequence's items, a map's keys), outside "
       "atol + rtol·|expected|, or NaN",
       "the model, runtime or hardware computes different results"),
    _c("E_HW_MISMATCH", V,
       "fewer than `match` hardware components found (`expected: >= K`, `actual: M`)",
       "run the license on the licensed host, or send 'oemkit license fingerprint' output to "
       "the vendor for a re-issue"),
    _c("E_IMAGE_BASE_INVALID", I,
       "`image --base`: neither an OCI image layout nor a registry reference; a layout "
       "without oci-layout, index.json, one image or this host's platform; a blob missing or "
       "not its digest; no python3.N in the layers",
       "pass the site's Python base image as an OCI layout (skopeo copy docker://... "
       "oci:DIR:TAG; DIR:TAG when it holds several) or as HOST[:PORT]/REPOSITORY:TAG in the "
       "site's registry; --python PATH names its interpreter"),
    _c("E_INDEX_INVALID", V,
       "the index is not a well-formed media index (JSON, envelope, fields, types, parts that "
       "do not tile the bundle, not canonical)",
       "copy the .index.json file written by 'oemkit split' again"),
    _c("E_INDEX_MISMATCH", V,
       "the joined bundle verifies but is not the one the index names (its manifest digest, "
       "name or version differs)",
       "the index and the parts do not belong together"),
    _c("E_INDEX_MISSING", I,
       "no index among the files, beside them, or in the work area",
       "oemkit join NAME.oemb.index.json NAME.oemb.part* --trust ROOT"),
    _c("E_INDEX_SIGNATURE", V,
       "a signed index whose signatures do not reach the trust root's `bundle` threshold "
       "(altered, or signed by an unknown key)",
       "the index was altered, or signed by a key this host does not trust; copy it again from "
       "the vendor's media"),
    _c("E_INFERENCE", V,
       "smoke check `run`: inference failed on the golden inputs or at the steady-state batch; "
       "`served:golden`: the server's answer to them is no inference response",
       "the model fails on its golden inputs on this host: check the model and the golden "
       "data on a development host"),
    _c("E_INPUT_CHANGED", I,
       "an input changed size while packed",
       "rebuild when the inputs are stable"),
    _c("E_INTERNAL", X,
       "an unexpected exception (a bug)",
       "rerun with --debug for a traceback and report it"),
    _c("E_INTERRUPTED", X,
       "any command: interrupted (Ctrl-C, end of input at a prompt)",
       "run the command again"),
    _c("E_JSON", I,
       "a JSON document that is not strict JSON where no more specific code applies (a member "
       "read by `sbom`/`provenance` without `--trust`, the claims given to `license "
       "inspect`/`attach`)",
       "the file is damaged or not JSON",
       also=(V,),
       reason="a file given to a command is bad input (3); a bundle member that is not JSON is "
              "a \"no\" (1, re-raised by verify)"),
    _c("E_KEY_ALGORITHM", I,
       "key is neither Ed25519 nor ECDSA P-256",
       "oemkit uses Ed25519 or ECDSA P-256 keys; generate one with 'oemkit keys generate'"),
    _c("E_KEY_COMPROMISED", V,
       "a signature verifies under a key marked compromised",
       "a compromised key invalidates everything it signed; ask the vendor for a copy signed"
       " with a current key"),
    _c("E_KEY_EXISTS", I,
       "keys generate: a key file exists",
       "choose another NAME or --out-dir; keys are never overwritten"),
    _c("E_KEY_FORMAT", I,
       "a public key in a trust root is not PEM SPKI (or is a private key); a key file is not "
       "the PEM key expected",
       "pass a PEM key written by 'oemkit keys generate': the .pub file where a public key "
       "is expected, the key file to sign"),
    _c("E_KEY_PASSPHRASE", I,
       "wrong passphrase, or an empty/mismatched one at the prompt",
       "check the passphrase (or OEMKIT_KEY_PASSPHRASE) and run the command again"),
    _c("E_KEY_PASSPHRASE_REQUIRED", I,
       "encrypted key (or new key) and no passphrase, no terminal",
       "set OEMKIT_KEY_PASSPHRASE or run in a terminal to be prompted"),
    _c("E_KEY_REVOKED", V,
       "the license's key is `compromised` or listed in the newest CRL's `revoked_keys`",
       "a revoked key invalidates everything it signed; ask the vendor to re-issue the license "
       "with a current key"),
    _c("E_KEY_URI", U,
       "a signer URI oemkit cannot sign with: not RFC 7512 (unknown or repeated attribute, no "
       "object), a network KMS scheme (gcpkms, awskms, azurekms, hashivault, sigstore) or an "
       "agent scheme (gnupg, tkey, envvar)",
       "use a key file or pkcs11:token=LABEL;object=KEY (docs/TRUST.md, Keys in hardware)"),
    _c("E_KEY_USAGE", V,
       "only keys without `bundle` usage signed; a license not signed by a `license` key, or a "
       "CRL (carried `revocations.crl` included) not signed by a `crl` key; at signing time, a "
       "token key recorded for another usage, or a key the given trust root lists without the "
       "usage the command signs for",
       "the document must be signed with a trust-root key of its own usage (bundle, license "
       "or crl); ask the vendor to re-sign it"),
    _c("E_KEY_WINDOW", V,
       "a bundle key signed outside its validity window (expired, retired, not yet valid); a "
       "license's key was outside its window at the license's `issued_at`",
       "the key had expired or been retired when this license was issued; ask for a re-issue"),
    _c("E_SLOT_LICENSE_API", E,
       "install: the slot's venv cannot be given the license API (a distribution cannot be "
       "copied from this host, or the offline pip install or the import check failed); "
       "reported as a `warn` check, the install goes on",
       "ship a DIST wheel in the bundle's wheelhouse (oemkit wheelhouse fetch), or install "
       "with --system-site-packages"),
    _c("E_WHEELHOUSE_INCOMPLETE", I,
       "`build --strict`: `requirements:`, or what the carried wheels require in turn on the "
       "target (markers, extras), name projects the wheelhouse does not carry or versions it "
       "does not have, or the spec has no wheelhouse (without `--strict`, a warning)",
       "fill the wheelhouse with 'oemkit wheelhouse fetch SPEC --dest WHEELS' and rebuild, or "
       "install with --system-site-packages on hosts whose Python has them"),
    _c("E_WHEELHOUSE_OFFLINE", E,
       "`wheelhouse fetch`: pip reached no package index (connection, name resolution, proxy "
       "or TLS errors)",
       "run it on a connected machine (or set PIP_INDEX_URL to a reachable mirror), then carry "
       "the wheelhouse over"),
    _c("E_WHEELHOUSE_NO_MATCH", E,
       "`wheelhouse fetch`: the index has no wheel of a requirement for the platform tags and "
       "Python asked for",
       "choose the target's tags (--profile, --platform) and --python-version, or relax the "
       "pin; build a missing wheel with 'pip wheel'"),
    _c("E_PKCS11_UNAVAILABLE", E,
       "a pkcs11: or hsm: key was given and python-pkcs11 is not installed",
       "pip install 'oemkit[hsm]'"),
    _c("E_PKCS11_NO_MODULE", U,
       "a token key was given and no PKCS#11 module is named (--pkcs11-module, the URI's "
       "module-path, OEMKIT_PKCS11_MODULE)",
       "pass --pkcs11-module /usr/lib/softhsm/libsofthsm2.so (or your token's library)"),
    _c("E_PKCS11_MODULE", E,
       "the PKCS#11 module file is missing or does not load",
       "install the token's PKCS#11 library, or correct --pkcs11-module"),
    _c("E_PKCS11_TOKEN", E,
       "no present token matches the URI (the tokens present are listed), several do, or the "
       "token cannot be opened",
       "insert the token, or correct token= in the URI"),
    _c("E_PKCS11_PIN", I,
       "wrong PIN for the token: tried once, never again in that command",
       "check --pin-file / OEMKIT_PKCS11_PIN; the try counter went down by one only"),
    _c("E_PKCS11_PIN_REQUIRED", I,
       "a token key and no PIN source (--pin-file, pin-source, OEMKIT_PKCS11_PIN) and no "
       "terminal to ask",
       "pass --pin-file or set OEMKIT_PKCS11_PIN"),
    _c("E_PKCS11_PIN_LOCKED", E,
       "the token's user PIN is locked, or has one try left and the PIN was not typed at the "
       "prompt",
       "unlock it with the token's SO PIN, or type the PIN in a terminal"),
    _c("E_PKCS11_OBJECT", I,
       "no private key (or several, or no public half) matches object=/id= on the token (the "
       "keys there are listed)",
       "correct object= in the URI, or create the key with 'oemkit keys generate --pkcs11'"),
    _c("E_PKCS11_SIGN", E,
       "the token refused to sign (no CKA_SIGN, mechanism missing)",
       "check the key's attributes and the token's mechanisms (CKM_EDDSA, CKM_ECDSA)"),
    _c("E_PKCS11_GENERATE", E,
       "the token refused to generate the key pair",
       "check the token supports the mechanism; try --algorithm ecdsa-p256"),
    _c("E_KID_UNKNOWN", V,
       "the trust root lists no key with that key id",
       "verify with the vendor's current trust root (--trust)"),
    _c("E_LAYOUT_EXPIRED", V,
       "`verify --layout`: the in-toto layout's `expires` is past (in-toto's clock)",
       "ask your security team for a current layout ('oemkit layout init' makes a starter)"),
    _c("E_LAYOUT_INSPECTION", V,
       "`verify --layout`: an inspection of the in-toto layout did not exit 0 in the "
       "verification directory",
       "the inspection's command must be installed here and exit 0; check the layout"),
    _c("E_LAYOUT_INVALID", I,
       "`verify --layout`: the layout file is not an in-toto layout in a DSSE envelope (or a "
       "signed Metablock), or in-toto cannot use it",
       "ask your security team for the layout file and the owner's public key"),
    _c("E_LAYOUT_RULE", V,
       "`verify --layout`: an in-toto artifact rule failed (the message names the rule, the "
       "step or inspection and the artifacts; `member` the first, `expected`/`actual` its "
       "SHA-256 in the signed link and in the bundle)",
       "the bundle's files are not the ones the signed link records: obtain a fresh copy from "
       "the vendor; if the layout's rules are wrong, ask your security team"),
    _c("E_LAYOUT_SIGNATURE", V,
       "`verify --layout`: the layout is not validly signed by every `--layout-key` given",
       "pass the public key of the layout's owner, or ask your security team to sign the "
       "layout again"),
    _c("E_LICENSE_REQUIRED", V,
       "serve: the bundle's license policy requires a license and none was found (the runtime is "
       "not ready, or degraded)",
       "attach one (oemkit license attach) or pass --license"),
    _c("E_LICENSE_SUPERSEDED", V,
       "a newer re-issue of this `license_id` was already accepted here",
       "use the newest license file the vendor sent",
       also=(I,),
       reason="`license attach` refuses a re-issue older than the one the bundle carries (3, "
              "not in the docs' tables); verifying it is a \"no\" (1)"),
    _c("E_LICENSE_UNREADABLE", E,
       "serve: a license file given or found in the licenses folder cannot be read",
       "check the license file's path and permissions"),
    _c("E_LIMIT", V,
       "`require_limit` / `--require-limit`: value over the limit, or no such limit",
       "reduce usage or ask the vendor for a higher limit"),
    _c("E_LIMIT_FILES", V,
       "manifest lists more files than `--max-files` (1,000,000)",
       "if this bundle is legitimate, raise the limit with --max-files"),
    _c("E_LIMIT_PARTS", V,
       "the index lists more than `--max-parts` parts (counted before its part list is parsed)",
       "if this split is legitimate, raise the limit with --max-parts"),
    _c("E_LINK_INVALID", V,
       "a `links/` member is not named `links/STEP.KEYID8.link`, or (`verify`) is not exactly "
       "the JSON in-toto writes of a DSSE envelope with one signature, its payload type and "
       "canonical base64",
       "the bundle was altered; obtain a fresh copy from the vendor"),
    _c("E_LINK_MISSING", V,
       "`verify --layout`: the bundle carries no in-toto link for a step of the layout (a "
       "bundle signed before oemkit wrote links, or never signed)",
       "ask the vendor for a bundle signed with in-toto links ('oemkit sign BUNDLE --key "
       "KEY' adds them)"),
    _c("E_LINK_SIGNATURE", V,
       "`verify`: a `links/` member is not signed by a key that signed the bundle, or its "
       "signature does not verify; `verify --layout`: links named for keys the layout allows "
       "are not validly signed by them (fewer than the step's threshold)",
       "the link was altered or renamed; obtain a fresh copy of the bundle"),
    _c("E_LINK_UNAUTHORIZED", V,
       "`verify --layout`: the bundle's links for a step are signed only by keys the layout "
       "does not name for it (the message names both)",
       "ask the vendor which key signs releases and add it to the layout, or get a bundle "
       "signed with an allowed key"),
    _c("E_LOCKED", E,
       "install/upgrade/rollback: another operation holds `PREFIX/.lock`; `migrate apply`: "
       "another migration holds `FILE.lock`",
       "wait for it to finish, then run this again"),
    _c("E_LOCK_UNSAFE", I,
       "a lock path (`PREFIX/.lock`, migrate apply's `FILE.lock`, the license state's "
       "`<state>.lock`) is a symbolic link, a directory or a special file; never opened through",
       "oemkit only makes a lock as an empty regular file: find out who put this there, move"
       " it away, then run this again"),
    _c("E_MANIFEST_DIGEST", V,
       "manifest bytes do not match the signed provenance subject (`sign` refuses such a "
       "bundle too)",
       "rebuild the bundle with 'oemkit build'"),
    _c("E_MANIFEST_INVALID", V,
       "manifest is not valid format-v1 JSON, or its bytes are not the canonical JSON of their "
       "parse",
       "the bundle was not written by a compatible oemkit or was altered; rebuild it with "
       "'oemkit build' or obtain a fresh copy",
       also=(I,),
       reason="`oemkit.models.manifest` raises it as a FormatError (3) to a library caller; "
              "every command reads a manifest through verify (or an installed slot's, "
              "install) which restates it as a \"no\" (1)"),
    _c("E_MEMBER_DIGEST", V,
       "SBOM, carried trust root or revocation list does not match its manifest digest; "
       "`sbom`/`provenance --trust`: the member changed after it was verified",
       "make sure nothing writes to the bundle, then run the command again"),
    _c("E_MEMBER_DUPLICATE", V,
       "outer member name appears twice",
       "the bundle is hostile or damaged; obtain a fresh copy"),
    _c("E_MEMBER_MISSING", V,
       "required member absent, or a member the manifest lists is absent",
       "is this an oemkit bundle?"),
    _c("E_MEMBER_NAME", V,
       "disallowed member name (including tar extension headers), `prefix` used, or non-ASCII "
       "name",
       "the bundle was not written by oemkit or is hostile; obtain a fresh copy"),
    _c("E_MEMBER_ORDER", V,
       "outer members out of the fixed order (manifest, sbom, provenance, trust/*, "
       "revocations.crl, payload, links/*, signatures/*, licenses/*)",
       "the bundle was not written by oemkit or was altered; obtain a fresh copy"),
    _c("E_MEMBER_SIZE", V,
       "an outer member over its size limit, or metadata members over 256 MiB together",
       "if this bundle is legitimate, raise the limit with --max-member-size (metadata) or "
       "--max-payload-bytes"),
    _c("E_MEMBER_TYPE", V,
       "outer member is not a regular file",
       "the bundle was not written by oemkit or is hostile; obtain a fresh copy"),
    _c("E_MEMBER_UNKNOWN", V,
       "outer member with an unknown name",
       "the bundle was altered or not written by oemkit; obtain a fresh copy"),
    _c("E_MEMBER_UNLISTED", V,
       "outer member (SBOM, trust root, revocation list, payload) not listed in the manifest",
       "the bundle was altered after it was built; obtain a fresh copy"),
    _c("E_MEMBER_UNVERIFIED", V,
       "`report.sbom.read_member_json(…, trust=…)` asked for a member the bundle signature "
       "does not cover (a signature or license); unreachable from the CLI",
       "read it without --trust (unverified)"),
    _c("E_MISSING_EXTRA", E,
       "`oemkit init`: `onnx` (the `onnx` extra) is not installed; `oemkit sizing` in "
       "oemkit's own interpreter, a smoke test's `.npz` golden outputs, `oemkit serve`: "
       "onnxruntime, numpy or the server stack (core dependencies) is missing, as after a "
       "`--no-deps` install",
       "pip install 'oemkit[onnx]' (in a checkout: pip install -e '.[onnx]')"),
    _c("E_MIGRATION_APPLY", I,
       "a value cannot be converted, scaled, split, or set under a non-object parent; the "
       "migrated config is nested deeper than 64 levels",
       "fix the config value the message names (or the bundle's migrations, if they move "
       "values too deep)"),
    _c("E_MIGRATION_CHAIN", I,
       "the config's version and the target are more than 1000 hops apart",
       "migrate through an intermediate release"),
    _c("E_MIGRATION_GAP", I,
       "no migration for a hop of the chain",
       "the bundle cannot migrate this config; the vendor must ship the missing migration"),
    _c("E_MIGRATION_INVALID", I,
       "the bundle's migrations file is malformed (shape, versions, unknown operation, "
       "arguments, `convert` types, paths over 32 levels or 1024 characters, over 1000 "
       "migrations or 10,000 steps)",
       "see the migration operations in docs/INSTALL.md"),
    _c("E_MIGRATION_IRREVERSIBLE", I,
       "a downgrade crosses a `convert` without `from_type` (a warning in `migrate test`)",
       "give the convert step a from_type to allow downgrades"),
    _c("E_MIGRATION_ROUNDTRIP", V,
       "`migrate test`: a sample migrated up and back down differs from itself",
       "fix the migrations or the sample; 'oemkit migrate test' on a built bundle lists "
       "every check",
       also=(I,),
       reason="`build` refuses a spec whose samples fail the upgrade-path test (3); `migrate "
              "test` reports a failed row (1)"),
    _c("E_MODEL_INVALID", I,
       "the spec's `model` cannot be read as an ONNX model (for the SBOM model card); "
       "`init --model`: onnxruntime cannot load the model or run it on its golden inputs",
       "the spec's 'model' must be a readable ONNX file; re-export it"),
    _c("E_MODEL_LOAD", V,
       "smoke check `run`: onnxruntime cannot create a session",
       "onnxruntime on this host cannot load the model: check the model's opset against the "
       "installed onnxruntime"),
    _c("E_MODEL_NOT_FOUND", I,
       "serve (HTTP 404): the request names a model or version this server does not serve",
       "ask GET /v2/models/NAME with the name and version the server logs at start"),
    _c("E_NOT_A_BUNDLE", V,
       "empty file, or the first block is not a ustar header",
       "pass a .oemb file written by 'oemkit build'; if this is a copy of one, obtain a "
       "complete copy"),
    _c("E_NOT_A_FILE", I,
       "that path is a directory",
       "pass the path of a file, not a directory"),
    _c("E_NOT_FOUND", I,
       "an input file (bundle, trust root, key, spec) does not exist",
       "check the path"),
    _c("E_NOT_INSTALLED", I,
       "`upgrade`: no `PREFIX/current`",
       "use 'oemkit install' first"),
    _c("E_NOT_READY", E,
       "serve (HTTP 503): the runtime is shutting down, or its license standing keeps it from "
       "being ready",
       "retry after the Retry-After seconds; GET /v2/health/ready says why"),
    _c("E_NOT_YET_VALID", V,
       "effective time before `not_before`",
       "wait until then, or check the host clock"),
    _c("E_NO_CONFIG", I,
       "`migrate plan/apply/test`: the bundle has no `config:` section",
       "add a 'config:' section to the bundle spec"),
    _c("E_NO_EXAMPLE", E,
       "`oemkit demo`: the example files are neither in a source checkout nor in the installed "
       "package",
       "the example ships in the oemkit wheel (oemkit/_examples) and in a source checkout; "
       "this installation lacks it: reinstall oemkit (pip install --force-reinstall oemkit, or "
       "pip install -e . in a checkout)"),
    _c("E_NO_GOLDEN", I,
       "`oemkit smoke`: the bundle has no `golden:` section; `oemkit sizing`: the bundle has "
       "no golden inputs in JSON (`.npz` inputs cannot be sized)",
       "add a 'golden:' section (with JSON inputs, for sizing) to the bundle spec and "
       "rebuild"),
    _c("E_NO_HARDWARE_IDS", E,
       "`license fingerprint` found no hardware ids",
       "run on the target host (machine-id, DMI, disks, NICs are read from /etc and /sys)"),
    _c("E_NO_ONNXRUNTIME", E,
       "smoke check `run`: the model process cannot import onnxruntime or numpy",
       "install onnxruntime and numpy for the Python that runs the model (pip install "
       "'oemkit[onnx]')"),
    _c("E_NO_PREVIOUS", I,
       "`rollback`: no `PREFIX/previous`, or no prefix at all (not created)",
       "'oemkit status --prefix DIR' shows the slots"),
    _c("E_NO_TRUST", I,
       "serve: licenses were found but no trust root to verify them against",
       "pass --trust ROOT"),
    _c("E_OCI_ARTIFACT", I,
       "`oci pull`/`import`: the manifest is not an oemkit bundle artifact (artifact type, "
       "one layer of oemkit's media type, its digest and size), or is not JSON or too large",
       "the reference names something else; push the bundle with 'oemkit oci push'"),
    _c("E_OCI_AUTH", I,
       "`oci`: the registry refused the request (401/403) with the credentials found, or "
       "none were found",
       "log in ('podman login HOST'), set $REGISTRY_AUTH_FILE, or give --username with "
       "--password-stdin"),
    _c("E_OCI_AUTH_FILE", I,
       "`oci`: a registry auth file (Docker/Podman config) cannot be read or is not JSON, "
       "or an entry is not base64 of user:password",
       "fix or remove the file ('podman login' / 'docker login' write it)"),
    _c("E_OCI_DIGEST", V,
       "`oci`: a manifest or the bundle layer is not the digest (or size) it was asked for; "
       "nothing is written (`expected`/`actual` set); `deploy kubernetes`: --registry-ref "
       "names another digest than the bundle's artifact",
       "the registry's or layout's copy is damaged or altered; push or export it again "
       "from a verified bundle"),
    _c("E_OCI_LAYOUT", I,
       "`oci export`/`import`: not an OCI image layout (or a non-empty directory that is "
       "not one), a broken index.json, a tag or blob it lacks",
       "export into a new directory, or copy the whole layout again"),
    _c("E_OCI_NOT_FOUND", I,
       "`oci`: the registry has no such repository, tag, digest or blob (404)",
       "check the reference (host, repository, tag or digest)"),
    _c("E_OCI_PLAIN_HTTP", U,
       "`oci`: --plain-http to a registry host that is not loopback",
       "use TLS (--ca-file for the site's CA); plain HTTP only to 127.0.0.1, ::1 or "
       "localhost"),
    _c("E_OCI_REF", U,
       "`oci`: not HOST[:PORT]/REPOSITORY[:TAG][@sha256:DIGEST] (the host named; a tag or "
       "a digest), or a tag outside the OCI grammar",
       "e.g. registry.site:5000/oemkit/example:0.3.0"),
    _c("E_OCI_REGISTRY", E,
       "`oci`: the registry answered 5xx or broke the distribution protocol (a Range "
       "answer for other bytes, an upload without a Location)",
       "check the registry's logs and run the command again (a pull or push resumes)"),
    _c("E_OCI_TLS", E,
       "`oci`: the TLS handshake with the registry failed (an unknown CA, a wrong name)",
       "give the site's CA bundle with --ca-file"),
    _c("E_OCI_UNREACHABLE", E,
       "`oci`: the connection to the registry failed or dropped (refused, reset, timed "
       "out); a pull keeps its partial file",
       "check the registry, then run the same command again: a pull continues its partial "
       "file, a push skips the blobs the registry has and resumes its upload"),
    _c("E_OUTPUT_EXISTS", I,
       "the output name is taken (a file, link or directory join did not create; `oci "
       "pull`/`import`, `layout init`: --out exists); `--force` replaces a file",
       "remove or rename it, choose another --out, or pass --force to replace a file"),
    _c("E_OVERLOADED", E,
       "serve (HTTP 503): more requests are queued than --max-queue allows",
       "retry after the Retry-After seconds, or add workers or raise --max-queue"),
    _c("E_PART_CORRUPT", V,
       "has a damaged header, is not a part at all, is longer than the index says, cannot be "
       "read, or its SHA-256 does not match the index (found while it is copied; the other "
       "parts are kept)",
       "copy that part again (or use another copy of the medium); the other parts are kept"),
    _c("E_PART_DUPLICATE", V,
       "is given twice (the same file, or two copies of one part)",
       "pass each part once"),
    _c("E_PART_FOREIGN", V,
       "belongs to another bundle, or to another split of this bundle (another `--size`)",
       "that file belongs to another bundle or another split: take the part with the right "
       "name from this bundle's media"),
    _c("E_PART_MISSING", V,
       "is not among the files given (nor in the work area)",
       "bring the missing part(s) and run join again; the parts already checked are kept"),
    _c("E_PART_ORDER", V,
       "holds another part than its name says (swapped or mislabelled files)",
       "the file's name says another part number than its contents: a mislabelled or swapped"
       " part; pass the right files"),
    _c("E_PART_TRUNCATED", V,
       "is shorter than the index says (an interrupted copy)",
       "copy that part again"),
    _c("E_PAYLOAD_BOMB", V,
       "payload decompresses past the bound",
       "a bundle that is legitimate but larger than the payload bound can raise it with "
       "--max-payload-bytes; otherwise the bundle is hostile or damaged: obtain a fresh copy "
       "from the vendor"),
    _c("E_PAYLOAD_CORRUPT", V,
       "payload is not valid zstd or tar (including a PAX number of more than 20 digits, and "
       "anything but zeros after the end-of-archive marker), or ends early",
       "the payload is damaged; obtain a fresh copy of the bundle"),
    _c("E_PAYLOAD_DIGEST", V,
       "payload file content, member size or member digest differs from the manifest (`sign` "
       "refuses a payload that differs from the provenance)",
       "rebuild the bundle with 'oemkit build'"),
    _c("E_PAYLOAD_DUPLICATE", V,
       "a payload path appears twice",
       "the payload does not match the manifest: the bundle was altered or damaged; obtain a"
       " fresh copy"),
    _c("E_PAYLOAD_EXTRA", V,
       "payload entry not in the manifest",
       "the payload does not match the manifest: the bundle was altered or damaged; obtain a"
       " fresh copy"),
    _c("E_PAYLOAD_MISSING", V,
       "manifest file absent from the payload",
       "the payload does not match the manifest: the bundle was altered or damaged; obtain a"
       " fresh copy"),
    _c("E_PAYLOAD_MODE", V,
       "payload file mode differs from the manifest",
       "the payload does not match the manifest: the bundle was altered or damaged; obtain a"
       " fresh copy"),
    _c("E_PAYLOAD_ORDER", V,
       "payload entries out of manifest order",
       "the payload does not match the manifest: the bundle was altered or damaged; obtain a"
       " fresh copy"),
    _c("E_PAYLOAD_SIZE", V,
       "payload file size differs from the manifest",
       "the payload does not match the manifest: the bundle was altered or damaged; obtain a"
       " fresh copy"),
    _c("E_PAYLOAD_TYPE", V,
       "license: payload type is not the license type (e.g. a CRL or a bundle signature "
       "re-armored)",
       "pass a license written by 'oemkit license issue'"),
    _c("E_PAYLOAD_UNSAFE", V,
       "unsafe path, non-regular entry, case/Unicode collision, or file/directory clash",
       "the bundle is hostile or damaged; do not use it"),
    _c("E_PERMISSION", E,
       "that file cannot be read",
       "run as the user that owns it, or fix its permissions"),
    _c("E_PIP", E,
       "install/upgrade (row `dependencies`): the offline `pip install` of the bundle's wheels "
       "failed; `wheelhouse fetch`: `pip download` failed for another reason than no network "
       "or no matching wheel (a hash mismatch, a bad requirements file); `image`: building "
       "oemkit's wheel or installing the wheels for the base's Python failed",
       "read pip's output above; the wheelhouse must hold every dependency for this platform "
       "and Python"),
    _c("E_PREFIX_JOURNAL", I,
       "`PREFIX/.journal` is not a journal oemkit wrote (not its format, over 64 KiB or 64 "
       "names, a name oemkit never makes such as `../x` or `db`); nothing is removed",
       "oemkit removes only the names its journal records; check no oemkit command is running, "
       "remove leftovers listed in it by hand if you trust them, delete the journal, then run "
       "this again"),
    _c("E_PREFIX_LAYOUT", I,
       "install/upgrade/rollback/status: the prefix holds an entry oemkit does not make, or "
       "one of another type (each named); judged before anything is created or locked",
       "oemkit only works in a new or empty directory or in one it laid out itself, and never "
       "follows or removes what it did not make: move these entries away (or choose another "
       "--prefix), then run this again"),
    _c("E_PRODUCT_MISMATCH", V,
       "`upgrade` (row `version`): the bundle is another product than the current slot's",
       "install a different product under its own --prefix"),
    _c("E_PROFILE_INVALID", I,
       "a hardware profile fails `profile.schema.json` (YAML-level problems keep the "
       "`E_SPEC_YAML`/`E_SPEC_DUPLICATE_KEY`/`E_SPEC_DEPTH` codes)",
       "fix the field the message names so the profile matches profile.schema.json "
       "(docs/SMOKE.md lists the fields)"),
    _c("E_PROFILE_NOT_FOUND", I,
       "`smoke --profile` / `profile show`: no such profile file, shipped profile or (smoke) "
       "bundle profile",
       "pass a shipped profile name ('oemkit profile list') or an existing YAML file"),
    _c("E_PROFILE_UNMET", E,
       "`oemkit sizing` (raised, unless `--force`); smoke and the post-install smoke test "
       "(check `host`): the host lacks the profile's architecture, cores, memory, CPU flags or "
       "a required provider",
       "run on a host that matches the profile or choose another --profile ('sizing --force'"
       " measures anyway)"),
    _c("E_PROVENANCE_INVALID", V,
       "provenance is not an in-toto Statement v1 with predicate type SLSA Provenance v1, a "
       "`subject` list and a string `finishedOn` (`sign` refuses such a bundle too; a "
       "`finishedOn` that is not a valid time is `E_TIME` there)",
       "the bundle is damaged or not an oemkit bundle; obtain a fresh copy"),
    _c("E_PROVENANCE_SUBJECT", V,
       "provenance and manifest disagree on the payload digest",
       "the bundle was altered after it was built; obtain a fresh copy"),
    _c("E_PROVIDER_FALLBACK", V,
       "smoke check `providers`: the session does not use the profile's first provider, which "
       "is required",
       "install the onnxruntime build for this accelerator, or choose another --profile"),
    _c("E_PROVIDER_MISSING", E,
       "smoke check `providers`: a `require: true` execution provider is not available on this "
       "host",
       "install the onnxruntime build for this accelerator (e.g. onnxruntime-gpu) or choose "
       "another --profile"),
    _c("E_REQUEST_INVALID", I,
       "serve (HTTP 400/405): a request the protocol refuses: malformed JSON or fields, an unknown"
       " datatype, a shape or datatype the model does not take, unknown inputs or outputs, more "
       "rows than max_batch",
       "fix the request; GET /v2/models/NAME lists the model's inputs and outputs"),
    _c("E_REQUEST_TIMEOUT", I,
       "serve (HTTP 408): the client did not send its whole body within --request-timeout",
       "send the body promptly, or raise --request-timeout"),
    _c("E_REQUEST_TOO_LARGE", I,
       "serve (HTTP 413): the body is over --max-body, or a shape declares more elements than a "
       "tensor may hold",
       "send smaller requests, or raise --max-body"),
    _c("E_REVOKED", V,
       "the newest CRL revokes this `license_id` (at this `seq`)",
       "contact the vendor for a replacement license"),
    _c("E_RUNTIME_CRASH", V,
       "smoke check `run`/`entrypoint`/`served:start`/`served:ready`/`served:shutdown`: the "
       "process exited non-zero (its last three stderr lines are shown; --debug prints all "
       "of it), or the entrypoint wrote no readable output",
       "run it with --debug, or check the model and the bundle's entrypoint on a development"
       " host"),
    _c("E_SBOM_INVALID", V,
       "SBOM is not JSON with `bomFormat` CycloneDX and `specVersion` 1.6",
       "the SBOM is damaged; obtain a fresh copy"),
    _c("E_SBOM_MISMATCH", V,
       "SBOM misses a payload file, lists one twice or with the wrong hash, or claims an extra "
       "file",
       "the SBOM does not describe the payload; rebuild the bundle with 'oemkit build' or "
       "obtain a fresh copy"),
    _c("E_SBOM_SCHEMA", V,
       "SBOM fails the CycloneDX 1.6 JSON Schema (the message names up to three violations)",
       "the SBOM was altered or written by a non-conforming tool; rebuild the bundle"),
    _c("E_SERVE_METRICS", V,
       "smoke check `served:metrics`: the server's /metrics does not parse as Prometheus "
       "text, or does not count the requests just made or show one license state",
       "read the server's /metrics by hand (oemkit serve, then curl /metrics)"),
    _c("E_SERVICE_FAILED", E,
       "install/upgrade/rollback --service systemd: the unit could not be written, "
       "`systemd-analyze verify` rejects it, or systemctl failed (the switch is undone)",
       "check 'systemctl status' and 'journalctl -u' for the unit; run as root, or pass "
       "--service none"),
    _c("E_SERVICE_NOT_READY", V,
       "install/upgrade/rollback: the release never answered /v2/health/ready with 200 "
       "within --ready-timeout (the message says what it answered); it is not switched to",
       "fix what the readiness endpoint names (a license: oemkit license verify; a model "
       "or config: the release), or raise --ready-timeout"),
    _c("E_SIGNATURE_PAYLOAD", V,
       "a signature covers another payload type or other bytes than the provenance",
       "the signature belongs to another document or the bundle was altered; obtain a fresh "
       "copy"),
    _c("E_SIGNATURE_THRESHOLD", V,
       "fewer good bundle signatures than `thresholds.bundle`",
       "sign the bundle with more trusted bundle keys"),
    _c("E_SIGNATURE_UNTRUSTED", V,
       "no signature verifies under any key of the effective root",
       "the bundle was signed by an unknown key or altered after signing; check --trust or "
       "obtain a fresh copy"),
    _c("E_SIG_INVALID", V,
       "wrong length, not strict DER, high S, or the signature does not verify",
       "the file was altered after signing; ask the vendor for a fresh copy"),
    _c("E_SIZING_INVALID", I,
       "`sizing compare`: a file that is not an oemkit `sizing.json`, or a report of another "
       "shape; `deploy kubernetes --sizing`: also another bundle's, or a recommendation that "
       "is not achievable or lacks its figures",
       "pass two sizing.json files written by 'oemkit sizing'"),
    _c("E_SLOT_DAMAGED", I,
       "`upgrade` (without `--allow-downgrade`) or `rollback` meets a slot whose `slot.json` "
       "is missing, unreadable or not what install writes",
       "oemkit wrote this file and it was changed since: roll back or reinstall the release"),
    _c("E_SMOKE_TIMEOUT", V,
       "smoke check `run`/`entrypoint`: killed after the profile's `timeout_s`; "
       "`served:start`/`served:ready`: not listening or ready within it; `served:shutdown`: "
       "not exited within it after SIGTERM",
       "the model hangs or is far too slow for this host"),
    _c("E_SOURCE_DATE_EPOCH", I,
       "`SOURCE_DATE_EPOCH` not an integer, or `--source-date-epoch` negative",
       "set it to seconds since 1970-01-01 UTC, or unset it"),
    _c("E_SPEC_CRL", I,
       "the spec's `crl` is not an armored oemkit revocation list (no `OEMKIT CRL` block, bad "
       "armor or envelope, another payload type); its signature is not judged at build time",
       "point crl: at a file written by 'oemkit crl issue'"),
    _c("E_SPEC_DEPTH", I,
       "spec nested deeper than 64 levels",
       "flatten the document: specs are at most 64 levels deep"),
    _c("E_SPEC_DESCRIPTION", I,
       "`release.scaffold.scaffold_bundle(description=…)`: empty or control characters (the "
       "CLI passes none)",
       "give one non-empty line of text without control characters"),
    _c("E_SPEC_DUPLICATE_KEY", I,
       "a key appears twice in one spec mapping",
       "remove one of the two entries"),
    _c("E_SPEC_FILE_TYPE", I,
       "a spec path is a FIFO, socket or device",
       "only regular files can be packed"),
    _c("E_SPEC_INVALID", I,
       "spec fails its JSON Schema (unknown field, wrong type, missing field, bad pattern)",
       "fix the field the message names; docs/SPEC.md lists the spec's fields"),
    _c("E_SPEC_MISSING_FILE", I,
       "a spec path or pattern matches nothing, a `trust_roots` file is missing, or a file "
       "cannot be opened while packing",
       "fix the path or pattern, or add the file (readable) next to the spec"),
    _c("E_SPEC_NAME", I,
       "`oemkit init`: invalid bundle name",
       "use 1-64 characters from a-z 0-9 . _ - starting with a letter or digit, e.g. "
       "'acme-classifier'"),
    _c("E_SPEC_PATH", I,
       "a spec path breaks the path rules or leaves the spec directory",
       "paths in a spec are relative to the spec's directory and stay inside it; fix the "
       "path"),
    _c("E_SPEC_PATH_COLLISION", I,
       "two packed paths equal after case/Unicode folding, or a file that another path needs "
       "as a directory",
       "rename one of them: they would overwrite each other on Windows and macOS"),
    _c("E_SPEC_REQUIREMENT", I,
       "an entry of `requirements` is not a PEP 508 requirement without a URL (`NAME[EXTRAS] "
       "SPECIFIERS[; MARKER]`, optionally followed by `--hash=sha256:HEX` options); other pip "
       "options, URLs and comments are refused",
       "write NAME[EXTRAS]SPECIFIERS; MARKER as in requirements.txt, e.g. onnxruntime>=1.17,<2 "
       "(no URLs or pip options)"),
    _c("E_SPEC_TRUST_ROOTS", I,
       "the carried `trust_roots` do not chain: same version twice, a gap, the oldest not "
       "self-signed, or a successor check failing (threshold, un-revoked key)",
       "carry every trust-root version after the one hosts pin, each signed by its "
       "predecessor"),
    _c("E_SPEC_YAML", I,
       "spec is not UTF-8, empty, a YAML syntax error, a non-string key or an alias "
       "(`schema.py`)",
       "save the spec as UTF-8 and fix the YAML at the line the message names (see "
       "docs/SPEC.md)"),
    _c("E_STATE_INVALID", I,
       "internal: the license state file is not strict JSON; `_parse_state` catches it at "
       "once and the file is set aside as `.corrupt` with a warning (never an error, never "
       "an exit code)",
       "nothing to do: oemkit sets the file aside as .corrupt and starts a new one"),
    _c("E_STATE_UNUSABLE", E,
       "the state path is a directory, a special file (FIFO, device), below something that is "
       "not a folder, or unreadable for another reason (§10)",
       "move it away (oemkit creates the state file itself), or pass another state file "
       "(--state, $OEMKIT_STATE)"),
    _c("E_STOP", O,
       "internal signal: the unverified config read has every wanted payload file; raised by "
       "its sink, passed on by the payload reader and suppressed by `_unverified_configs`; "
       "never reaches a user",
       "never shown; if it is, it is a bug in oemkit: rerun with --debug and report it"),
    _c("E_TAR_CHECKSUM", V,
       "header checksum mismatch (after the first header)",
       "the bundle is damaged; obtain a fresh copy"),
    _c("E_TAR_END", V,
       "incomplete end-of-archive marker",
       "the copy is truncated or damaged; obtain a complete copy"),
    _c("E_TAR_HEADER", V,
       "header without `ustar` magic, non-octal size/checksum, or a pax header other than the "
       "one size record of 1.2",
       "the file is damaged or not a bundle written by oemkit; obtain a fresh copy"),
    _c("E_TAR_PADDING", V,
       "non-zero bytes in member or pax-header padding",
       "the bundle was altered or damaged; obtain a fresh copy"),
    _c("E_TAR_TRAILING", V,
       "data (or > 10240 zero bytes) after the end-of-archive marker",
       "the file carries data outside the archive; obtain a fresh copy"),
    _c("E_SUPPORT_INVALID", I,
       "`support inspect`: not an oemkit support bundle (not zstd or tar, the manifest not "
       "first, or a malformed manifest)",
       "the support bundle is damaged or was not written by oemkit support collect; ask for a "
       "fresh one"),
    _c("E_SUPPORT_TAMPERED", V,
       "`support inspect`: a file missing, added or changed since collection, or a signature "
       "that fails or is not by the expected host key",
       "the support bundle was changed after it was collected (or damaged in transit): ask "
       "the site for a fresh one"),
    _c("E_SUPPORT_TOO_LARGE", E,
       "`support collect`: the bundle came out over `--max-size`; nothing was written",
       "pass a larger --max-size"),
    _c("E_TIME", I,
       "a time (provenance `finishedOn`, trust-root time, `--expires`/`--not-before`) is not "
       "ISO 8601",
       "use ISO 8601, e.g. 2027-06-30 or 2027-06-30T12:00:00Z, between years 0001 and 9999",
       also=(V,),
       reason="documented 1 / 3: a time given on the command line is bad input (3); one in a "
              "bundle member (provenance, carried root) is a \"no\" (1, re-raised)"),
    _c("E_TLS_INVALID", I,
       "serve: the --tls-cert / --tls-key pair cannot be loaded (missing, not PEM, or a key that "
       "does not match the certificate); `deploy kubernetes --registry-ca`: no PEM certificate",
       "pass a PEM certificate and the unencrypted PEM private key that belongs to it"),
    _c("E_TOKEN_INVALID", I,
       "serve: the --token-file holds fewer than 16 bytes",
       "write a long random token, e.g. python -c \"import secrets;print(secrets.token_hex())\""),
    _c("E_TOO_LARGE", I,
       "an input file over its read limit: trust root 16 MiB, spec 1 MiB, key file 64 KiB",
       "this does not look like the right file; pass the file the command expects"),
    _c("E_TOO_MANY_LICENSES", V,
       "more than 64 `licenses/*` members in a bundle",
       "the bundle is hostile or damaged; obtain a fresh copy"),
    _c("E_TOO_MANY_MEMBERS", V,
       "more than 512 outer members",
       "the bundle is hostile or damaged; obtain a fresh copy"),
    _c("E_TOO_MANY_SIGNATURES", V,
       "more than 64 signatures in one envelope, more than 32 signature (or in-toto link) "
       "members in a bundle, "
       "or a bundle's signatures needing more signature checks than its budget (1.4); `sign`: "
       "signing would make more than 32 (nothing written)",
       "the file is hostile or damaged: obtain a fresh copy ('sign': sign with fewer keys)",
       also=(I,),
       reason="the envelope of a pinned root and `sign` (nothing written) are bad input (3); "
              "in a bundle it is a \"no\" (1)"),
    _c("E_TRUNCATED", V,
       "file ends inside a header, pax header, member or padding (also `sign`, if a member "
       "ends early while copying)",
       "the copy is truncated; obtain a complete copy"),
    _c("E_TRUST_BELOW_THRESHOLD", I,
       "`trust retire-key`/`revoke-key`: the change would leave fewer active keys of one of "
       "the key's usages than that usage's threshold (for `root` always; for the other "
       "usages unless none is left at all); the hint says which key to add first",
       "add another key of that usage first ('oemkit trust add-key'), then retire or revoke "
       "this one"),
    _c("E_TRUST_CHAIN_LENGTH", V,
       "more than 256 newer carried roots",
       "the bundle is hostile or damaged"),
    _c("E_TRUST_INVALID", I,
       "trust root malformed: JSON, fields, key id/public key mismatch, non-canonical payload, "
       "wrong payload type, fewer active root keys than `thresholds.root`",
       "pass a trust root written by 'oemkit trust', or get it again from the vendor",
       also=(V,),
       reason="pinned roots and `trust` commands are bad input (3); a carried root whose name "
              "and version disagree is the bundle's fault (1)"),
    _c("E_TRUST_KEY_EXISTS", I,
       "`trust add-key`: the key is already in the root",
       "use retire-key or revoke-key to change an existing key"),
    _c("E_TRUST_KEY_STATUS", I,
       "`trust retire-key`/`revoke-key`: the key is compromised (final), or already has that "
       "status",
       "nothing to change, or (a compromised key, which is final) add a new key instead"),
    _c("E_TRUST_KEY_UNKNOWN", I,
       "`trust retire-key`/`revoke-key`: no single key matches the id or prefix; `trust "
       "sign` or a `--propose`d change: the key is no active root key of the proposal or "
       "of the version in force, so its signature would not count",
       "'oemkit trust show ROOT' lists the key ids"),
    _c("E_TRUST_MISMATCH", I,
       "`trust merge`: the copies are not of one proposal (their payloads differ)",
       "merge only copies of one proposal, each signed as it was handed out"),
    _c("E_TRUST_REQUIRED", I,
       "serve: a bundle file is served only after it verifies, which needs --trust",
       "pass --trust with the vendor's trust root"),
    _c("E_TRUST_ROLLBACK", V,
       "carried root not newer than the trusted one",
       "a trust root may only move forward; this looks like a rollback",
       also=(I,),
       reason="a carried root is a \"no\" (1); writing a successor root that fails the successor "
              "check is bad input (3, re-raised by release.trust)"),
    _c("E_TRUST_SKIP", V,
       "carried roots skip a version",
       "supply every trust-root version in between",
       also=(I,),
       reason="a carried root is a \"no\" (1); writing a successor root that fails the successor "
              "check is bad input (3, re-raised by release.trust)"),
    _c("E_TRUST_THRESHOLD", V,
       "trust root lacks enough root signatures (self or from the previous version)",
       "a trust root must be signed by enough root keys of itself and of its previous "
       "version; get it again from the vendor",
       also=(I,),
       reason="documented 3 / 1: a pinned root not properly self-signed, or a successor root "
              "being written, is bad input (3, re-raised); a carried root is a \"no\" (1)"),
    _c("E_TRUST_TOO_MANY_KEYS", I,
       "trust root lists more than 256 keys (`trust add-key` refuses the 257th)",
       "hosts refuse a trust root of more than 256 keys: plan rotations to reuse fewer keys",
       also=(V,),
       reason="documented 3 / 1: a pinned root or `trust add-key` is bad input (3); a carried "
              "root is a \"no\" (1, re-raised)"),
    _c("E_TRUST_UNREVOKED", V,
       "a carried root drops a key the previous version marks compromised, or gives it another "
       "status",
       "a compromised key stays compromised in every later version; this trust root was forged "
       "or built wrongly",
       also=(I,),
       reason="a carried root is a \"no\" (1); writing a successor root that fails the successor "
              "check is bad input (3, re-raised by release.trust)"),
    _c("E_TRUST_WEAK_KEY", I,
       "trust root lists an Ed25519 key that is a small-order point (would accept forged "
       "signatures)",
       "the trust root is hostile or broken; get it again from the vendor",
       also=(V,),
       reason="documented 3 / 1: a pinned root is bad input (3); a carried root is a \"no\" (1, "
              "re-raised by the carried-root walk)"),
    _c("E_UNAUTHORIZED", I,
       "serve (HTTP 401): the server has a --token-file and the request has no matching "
       "Authorization: Bearer header",
       "send Authorization: Bearer TOKEN with the token the site configured"),
    _c("E_UNSIGNED", V,
       "no signature member",
       "sign it with 'oemkit sign BUNDLE --key KEY'"),
    _c("E_USAGE", U,
       "the command was called wrongly: a bad, missing or conflicting option or argument "
       "(click's usage errors too; every numeric option)",
       "see the command's --help"),
    _c("E_USAGE_CHAIN", V,
       "`usage verify`: the report does not follow the accepted one (its previous digest "
       "differs, or the periods overlap)",
       "the host's usage state was restored or copied from elsewhere; ask the customer before "
       "billing"),
    _c("E_USAGE_FINGERPRINT", V,
       "`usage verify`: the report's host is not the fingerprint's (another salt, or too few "
       "matching components)",
       "a report from another host, or made with another fingerprint's salt: pass the "
       "fingerprint this customer's license was issued for"),
    _c("E_USAGE_GAP", V,
       "`usage verify`: reports are missing before this one, or arrive out of order",
       "verify the missing report first, or pass --allow-gap to bill from this one on"),
    _c("E_USAGE_INVALID", I,
       "the usage report's payload is not a valid report (type, fields, canonical form, "
       "totals, days outside the period)",
       "the report was not written by a compatible oemkit; make a new one with 'oemkit usage "
       "report'",
       also=(V,),
       reason="`oemkit.models.usage` raises it as a FormatError (3) to a library caller; "
              "`verify_report` restates it as a \"no\" (1): the report is the evidence"),
    _c("E_USAGE_KEY", V,
       "`usage verify`: signed by a key other than the pinned or ledger-recorded host key, or "
       "the envelope's key id is not the key's",
       "pin the host key that belongs to this customer's host (--host-key HOST.pub)"),
    _c("E_USAGE_LEDGER", I,
       "`usage verify --ledger`: the file is not an oemkit usage ledger",
       "pass the ledger file 'oemkit usage verify --record' writes, or restore it from a "
       "backup"),
    _c("E_USAGE_NO_DATA", I,
       "`usage report`: nothing was metered on this host (for that license)",
       "serve under a license issued with --metering first, or pass the --state the runtime "
       "uses"),
    _c("E_USAGE_REPLAY", V,
       "`usage verify`: the sequence number is not above the last accepted one",
       "each report is billed once; ask the customer for a new one ('oemkit usage report')"),
    _c("E_USAGE_SIG_INVALID", V,
       "`usage verify`: the signature does not verify over the report's bytes (edited)",
       "ask the customer for the report file exactly as 'oemkit usage report' wrote it"),
    _c("E_USAGE_STATE", E,
       "the host's usage state file is damaged or unusable",
       "move it away to count afresh (tell the vendor: report numbers restart at 1), or "
       "restore it from a backup"),
    _c("E_WHEEL_DUPLICATE", I,
       "the wheelhouse holds two wheels of one project",
       "keep one wheel per project (the one for the target platform)"),
    _c("E_WHEEL_HASH", I,
       "a `requirements` entry gives `--hash=sha256:` values and the wheelhouse wheel of that "
       "project matches none",
       "the wheel is not the one the release pinned; refill the wheelhouse from a trusted index"),
    _c("E_WHEEL_INVALID", I,
       "a wheelhouse `.whl` is not a valid wheel (no single `.dist-info/METADATA`, no "
       "Name/Version)",
       "rebuild the wheelhouse with 'pip download' or 'pip wheel'"),
    _c("E_WHEEL_VERSION", I,
       "a `requirements` entry pins `==V` but the wheelhouse wheel of that project has another "
       "version",
       "refill the wheelhouse with 'oemkit wheelhouse fetch'"),
    _c("E_WORK_AREA", I,
       "the work area's name is taken by a symbolic link, a non-folder, or a folder holding "
       "files join did not write",
       "remove or rename it (join never writes into, or removes, a folder it did not make), or "
       "choose another --out"),
    _c("E_WRITE", E,
       "a write, create or rename fails (output directory, temporary file, `init`, `unpack` "
       "staging, an install prefix, slot or lock, migrate apply's lock, join's output, "
       "`layout init`'s layout); "
       "nothing half-written is left",
       "free space or fix the permissions there, or choose another output"),
)

REGISTRY: dict[str, Code] = {code.name: code for code in _CODES}

#: Places where a caught error's code is raised again with another (or the same) family,
#: keyed by (function, caught family, raised family): each must be declared here, with
#: why, so that a new way for codes to change family shows up in review. Codes known to
#: cross a family this way declare it in their ``also``.
REWRAPS: dict[tuple[str, str, str], str] = {
    ("_version_problem", "(passed in)", I):
        "an unreadable slot.json is restated: the installed version is unknown",
    ("judge_attached", f"{V}|{I}", V):
        "an attached license that cannot even be read (e.g. E_TOO_LARGE) is still a \"no\"",
    ("load_pinned", V, I):
        "a pinned trust root that is not properly self-signed is bad input (3); the one "
        "pinned-root loader (verify_bundle, verify_open_bundle, plan_join and "
        "oemkit.license.load_trust call it)",
    ("open_delta", I, V):
        "a delta whose preamble does not parse (E_DELTA_INVALID from models.delta) is a "
        "\"no\" (1): the delta is evidence, as a bundle's members are",
    ("decode", I, V):
        "a delta whose header does not parse (E_DELTA_INVALID from models.delta) is a \"no\" "
        "(1), as its preamble",
    ("_rebuild", I, V):
        "file recipes that do not make NEW's manifest's files (E_DELTA_INVALID from "
        "models.delta's with_names) are a \"no\" (1)",
    ("verify_report", I, V):
        "a usage report whose payload does not parse (E_USAGE_INVALID from models.usage) is a "
        "\"no\" (1) to the vendor's check",
    ("verify_open_bundle", I, V):
        "a malformed member inside a bundle is the bundle's fault: the answer is \"no\" (1)",
    ("_check_config", I, I):
        "a config check failing at build is restated with the spec's location",
    ("_checked_statement", O, V):
        "sign refuses a provenance verify would refuse (its E_JSON, E_TIME become 1)",
    ("_successor", V, I):
        "writing a successor trust root that fails the successor check is bad input (3)",
    ("_judge_signatures", I, V):
        "a signature member that does not parse is the bundle's fault (1)",
    ("_admit", O, V):
        "a carried trust root that does not parse or load is the bundle's fault (1)",
    ("parse_root_envelope", I, I):
        "a trust root whose DSSE envelope does not parse keeps E_ENVELOPE, with a hint about "
        "trust roots instead of the envelope reader's about signature files",
    ("_as_format", I, I):
        "the JSON, YAML and schema readers' InputError, inside a config-side document, is "
        "the FormatError every models.config parser raises (code and fields kept)",
    ("parse_manifest", I, V):
        "a bundle's manifest failing its schema (the models' FormatError) is a \"no\" (1)",
    ("_slot_configs", I, V):
        "an installed slot's manifest that no longer parses is a \"no\" (1), as at verify",
    ("read_crl", I, V):
        "a signed CRL whose payload fails its schema (the models' FormatError) is a \"no\" (1)",
    ("read_claims", I, V):
        "unverified claims that fail their schema are the \"no\" verify would give (1)",
    ("issue_license", I, V):
        "claims verify would refuse are not signed: the same \"no\" (1)",
    ("issue_crl", I, V):
        "a CRL verify would refuse is not signed: the same \"no\" (1)",
}

#: Codes that never reach a user (no command prints them, no exit code carries them), so
#: no docs code table but this registry lists them: each is raised only in the module
#: named, and caught there; tests/test_codes.py fails if another module raises one.
CONTAINED: dict[str, tuple[str, str]] = {
    "E_STOP": ("oemkit.host.migrate",
               "_Enough (an OemkitError, not a VerificationError, so the payload reader "
               "neither restates it nor turns it into E_PAYLOAD_CORRUPT) is raised by the "
               "sink of _unverified_configs and suppressed around its _stream_payload call"),
    "E_STATE_INVALID": ("oemkit.host.license_state",
                        "_parse_state turns parse_json's InputError into _Corrupt (message "
                        "only); _read_state sets the file aside with a warning and _save "
                        "starts afresh"),
}

#: Registered codes no source raises, with why they stay (none today).
UNRAISED: dict[str, str] = {}


def lookup(name: str) -> Code:
    """The registry entry of ``name``; KeyError (naming docs/ERRORS.md) if unregistered."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise KeyError(f"{name} is not a registered error code (docs/ERRORS.md)") from None


# --------------------------------------------------------------------------- the scanner

_FAMILY_CLASSES = (V, U, I, E, O)


@dataclass(frozen=True)
class Site:
    """One code literal in the source. ``kind``: ``raise`` (``family`` is the class it is
    raised with, directly or through a helper), ``record`` (put in a report row or a
    problem list: ``family`` names the callee) or ``reference`` (compared, a dict key)."""

    code: str
    module: str
    line: int
    kind: str
    family: str
    function: str


@dataclass(frozen=True)
class Rewrap:
    """``restate(exc, Family, …)`` (or a hand-made ``Family(exc.code, …)``): a caught
    error's code raised again with ``raised``."""

    module: str
    line: int
    function: str
    caught: str
    raised: str


@dataclass(frozen=True)
class Scan:
    sites: tuple[Site, ...]
    rewraps: tuple[Rewrap, ...]

    def raised(self) -> dict[str, set[str]]:
        """Code -> the families its raise sites use."""
        out: dict[str, set[str]] = {}
        for site in self.sites:
            if site.kind == "raise":
                out.setdefault(site.code, set()).add(site.family)
        return out

    def modules(self, code: str) -> list[str]:
        """The modules that raise or record ``code`` (else those that mention it)."""
        used = {s.module for s in self.sites if s.code == code and s.kind != "reference"}
        return sorted(used or {s.module for s in self.sites if s.code == code})


def _source_root() -> Path:
    from pathlib import Path

    return Path(__file__).resolve().parent


def _callee(func: ast.expr) -> str | None:
    import ast

    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return None


def _code_index(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> int | None:
    """Position of a ``code`` parameter (-1: keyword-only), None without one."""
    names = [a.arg for a in fn.args.posonlyargs + fn.args.args]
    if "code" in names:
        index = names.index("code")
        return index - 1 if names[0] in ("self", "cls") else index
    return -1 if "code" in [a.arg for a in fn.args.kwonlyargs] else None


def _code_arg(call: ast.Call, index: int) -> ast.expr | None:
    for kw in call.keywords:
        if kw.arg == "code":
            return kw.value
    return call.args[index] if 0 <= index < len(call.args) else None


class _Index:
    """Family classes (and their subclasses in the tree) and the helpers that forward a
    ``code`` parameter into one, resolved by name: same module, then a ``from`` import,
    then a name defined once in the tree."""

    def __init__(self, modules: dict[str, ast.Module]) -> None:
        import ast

        self.classes: dict[str, str] = {name: name for name in _FAMILY_CLASSES}
        self.classes[F] = I
        changed = True
        while changed:
            changed = False
            for tree in modules.values():
                for node in ast.walk(tree):
                    if isinstance(node, ast.ClassDef) and node.name not in self.classes:
                        for base in node.bases:
                            root = self.classes.get(_callee(base) or "")
                            if root:
                                self.classes[node.name] = root
                                changed = True
                                break
        self.defs: dict[str, list[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]] = {}
        self.imports: dict[str, dict[str, str]] = {}
        for module, tree in modules.items():
            imports = self.imports.setdefault(module, {})
            for node in ast.walk(tree):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    self.defs.setdefault(node.name, []).append((module, node))
                elif isinstance(node, ast.ImportFrom) and node.module:
                    for alias in node.names:
                        imports[alias.asname or alias.name] = node.module
        self.helpers: dict[tuple[str, str, int], str] = {}
        changed = True
        while changed:
            changed = False
            for defs in self.defs.values():
                for module, fn in defs:
                    key = (module, fn.name, fn.lineno)
                    if key not in self.helpers:
                        family = self._forwards(module, fn)
                        if family:
                            self.helpers[key] = family
                            changed = True

    def _forwards(self, module: str, fn: ast.FunctionDef | ast.AsyncFunctionDef) -> str | None:
        import ast

        if _code_index(fn) is None:
            return None
        for node in ast.walk(fn):
            if isinstance(node, ast.Call):
                target = self.resolve(module, node)
                if target:
                    arg = _code_arg(node, target[1])
                    if isinstance(arg, ast.Name) and arg.id == "code":
                        return target[0]
        return None

    def candidates(self, module: str,
                   name: str) -> list[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
        defs = self.defs.get(name, [])
        local = [d for d in defs if d[0] == module]
        if local:
            return local
        source = self.imports.get(module, {}).get(name)
        imported = [d for d in defs if d[0] == source]
        if imported:
            return imported
        return defs if len(defs) == 1 else []

    def resolve(self, module: str, call: ast.Call) -> tuple[str, int] | None:
        """The family ``call`` raises a code with and the position of its code argument."""
        name = _callee(call.func)
        if name is None:
            return None
        if name in self.classes:
            return self.classes[name], 0
        for where, fn in self.candidates(module, name):
            family = self.helpers.get((where, fn.name, fn.lineno))
            if family:
                index = _code_index(fn)
                return family, -1 if index is None else index
        return None


def _modules(root: Path) -> dict[str, ast.Module]:
    import ast

    out: dict[str, ast.Module] = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        if name != __name__ and name != "oemkit.codes":
            out[name] = ast.parse(path.read_text(encoding="utf-8"), str(path))
    return out


def _docstrings(tree: ast.Module) -> set[int]:
    import ast

    out: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            first = node.body[0] if node.body else None
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                out.add(id(first.value))
    return out


def scan(root: Path | None = None) -> Scan:
    """Every code literal under ``root`` (the installed ``oemkit`` package by default),
    except this module's, and every place a caught code is raised again."""
    import ast
    import re

    pattern = re.compile(r"E_[A-Z0-9_]+\Z")
    modules = _modules(root or _source_root())
    index = _Index(modules)
    sites: list[Site] = []
    rewraps: list[Rewrap] = []
    for module, tree in modules.items():
        parents = {child: node for node in ast.walk(tree)
                   for child in ast.iter_child_nodes(node)}
        docstrings = _docstrings(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                rewrap = _rewrap(index, module, parents, node)
                if rewrap:
                    rewraps.append(rewrap)
            elif (isinstance(node, ast.Constant) and isinstance(node.value, str)
                  and pattern.match(node.value) and id(node) not in docstrings):
                fn = _enclosing(parents, node, (ast.FunctionDef, ast.AsyncFunctionDef))
                kind, family = _classify(index, module, parents, node, fn)
                sites.append(Site(node.value, module, node.lineno, kind, family,
                                  getattr(fn, "name", "")))
    sites.sort(key=lambda s: (s.module, s.line, s.code))
    rewraps.sort(key=lambda r: (r.module, r.line))
    return Scan(tuple(sites), tuple(rewraps))


def _enclosing(parents: dict[ast.AST, ast.AST], node: ast.AST,
               types: tuple[type[ast.AST], ...]) -> ast.AST | None:
    while node in parents:
        node = parents[node]
        if isinstance(node, types):
            return node
    return None


def _rewrap(index: _Index, module: str, parents: dict[ast.AST, ast.AST],
            call: ast.Call) -> Rewrap | None:
    import ast

    if _callee(call.func) == "restate":
        # errors.restate(exc, Family, ...): the caught error and the family it takes.
        raised = (index.classes.get(_callee(call.args[1]) or "")
                  if len(call.args) >= 2 else None)
        if not (raised and isinstance(call.args[0], ast.Name)):
            return None
        variable = call.args[0].id
    else:
        target = index.resolve(module, call)
        arg = _code_arg(call, target[1]) if target else None
        if not (target and isinstance(arg, ast.Attribute) and arg.attr == "code"
                and isinstance(arg.value, ast.Name)):
            return None
        raised, variable = target[0], arg.value.id
    caught = "(passed in)"
    node: ast.AST = call
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.ExceptHandler) and node.name == variable:
            types = (node.type.elts if isinstance(node.type, ast.Tuple)
                     else [node.type] if node.type is not None else [])
            caught = "|".join(index.classes.get(_callee(t) or "", _callee(t) or "?")
                              for t in types)
            break
    fn = _enclosing(parents, call, (ast.FunctionDef, ast.AsyncFunctionDef))
    return Rewrap(module, call.lineno, getattr(fn, "name", ""), caught, raised)


def _classify(index: _Index, module: str, parents: dict[ast.AST, ast.AST],
              node: ast.Constant, fn: ast.AST | None) -> tuple[str, str]:
    import ast

    child: ast.AST = node
    parent = parents.get(node)
    while isinstance(parent, (ast.IfExp, ast.BoolOp)):
        child, parent = parent, parents.get(parent)
    if isinstance(parent, ast.keyword):
        keyword, parent = parent, parents.get(parent)
        if keyword.arg != "code" or not isinstance(parent, ast.Call):
            return "record", f"{keyword.arg}="
        child = keyword.value
    if isinstance(parent, ast.Call):
        target = index.resolve(module, parent)
        if target and _code_arg(parent, target[1]) is child:
            return "raise", target[0]
        name = _callee(parent.func) or "?"
        if name == "__init__" and parent.args and parent.args[0] is child:
            cls = _enclosing(parents, parent, (ast.ClassDef,))
            family = index.classes.get(getattr(cls, "name", ""))
            if family:
                return "raise", family
        return "record", name
    if isinstance(parent, ast.arguments):
        owner = parents.get(parent)
        for where, helper in index.candidates(module, getattr(owner, "name", "")):
            family = index.helpers.get((where, helper.name, helper.lineno))
            if helper is owner and family:
                return "raise", family
        return "record", "default"
    if isinstance(parent, ast.Compare):
        return "reference", "compare"
    if isinstance(parent, ast.Dict):
        return "reference", "dict key" if child in parent.keys else "dict value"
    if isinstance(parent, ast.Assign) and fn is not None:
        names = {t.id for t in parent.targets if isinstance(t, ast.Name)}
        for sub in ast.walk(fn):
            if isinstance(sub, ast.Call):
                target = index.resolve(module, sub)
                arg = _code_arg(sub, target[1]) if target else None
                if target and isinstance(arg, ast.Name) and arg.id in names:
                    return "raise", target[0]
    return "reference", type(parent).__name__


# --------------------------------------------------------------------------- the document

def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _lines(result: Scan) -> Iterator[str]:
    yield "# Error codes"
    yield ""
    yield ("<!-- Generated from src/oemkit/codes.py: do not edit by hand. Regenerate with "
           "`python -m oemkit.codes --markdown > docs/ERRORS.md`; tests/test_codes.py fails "
           "when this file drifts. -->")
    yield ""
    yield (f"Every code oemkit emits ({len(REGISTRY)}), by family. A code's family is the "
           "`oemkit.errors` class it is raised with, and that family fixes the exit code: "
           "1 verification, policy or test failure (`VerificationError`), 2 usage "
           "(`UsageError`), 3 invalid input or configuration (`InputError`), 4 environment "
           "(`EnvironmentProblem`); 70 internal error and 130 interrupted come from the "
           "CLI's error guard. `--json` gives `code`, `message`, `hint` and `exit_code`; "
           "the hint is the default one (a raise site may give a more specific one). "
           "\"Raised in\" names the modules that raise or report the code.")
    yield ""
    for family in FAMILY_ORDER:
        codes = [c for c in REGISTRY.values() if c.family == family]
        if not codes:
            continue
        title = {X: "Internal (the CLI's error guard)",
                 O: "OemkitError (internal signals)"}.get(family, family)
        yield f"## {title}"
        yield ""
        yield "| code | exit | meaning | hint | raised in |"
        yield "|---|---|---|---|---|"
        for code in sorted(codes, key=lambda c: c.name):
            where = ", ".join(m.removeprefix("oemkit.") for m in result.modules(code.name))
            yield (f"| `{code.name}` | {code.exit_code}"
                   + (" / " + " / ".join(str(FAMILY_EXIT[a]) for a in code.also)
                      if code.also else "")
                   + f" | {_cell(code.meaning)} | {_cell(code.hint)} | {where} |")
        yield ""
    yield "## Codes that never reach a user"
    yield ""
    yield ("Raised and caught inside one module; no command prints them and no exit code "
           "carries them (tests/test_codes.py fails if another module raises one).")
    yield ""
    yield "| code | module | how it is contained |"
    yield "|---|---|---|"
    for name, (module, how) in sorted(CONTAINED.items()):
        yield f"| `{name}` | {module.removeprefix('oemkit.')} | {_cell(how)} |"
    yield ""
    yield "## Codes raised with two families"
    yield ""
    yield ("Raised on purpose with a second family (and so a second exit code); any other "
           "second family fails tests/test_codes.py.")
    yield ""
    yield "| code | family | also | why |"
    yield "|---|---|---|---|"
    for code in sorted(REGISTRY.values(), key=lambda c: c.name):
        if code.also:
            yield (f"| `{code.name}` | {code.family} ({code.exit_code}) | "
                   + ", ".join(f"{a} ({FAMILY_EXIT[a]})" for a in code.also)
                   + f" | {_cell(code.reason)} |")
    yield ""
    yield "## Where a caught code is raised again"
    yield ""
    yield ("`restate(exc, Family, …)` (`oemkit.errors.restate`: code, message, hint, member, "
           "check, field, expected and actual copied unless overridden) or "
           "`Family(exc.code, …)`: the code of a caught error keeps its name but takes the "
           "family (and exit code) of the place that re-raises it. A `FormatError` (what "
           "every `oemkit.models` parser raises) counts as an `InputError`.")
    yield ""
    yield "| function | module | caught | raised as | why |"
    yield "|---|---|---|---|---|"
    for rewrap in result.rewraps:
        why = REWRAPS.get((rewrap.function, rewrap.caught, rewrap.raised), "(undeclared)")
        yield (f"| `{rewrap.function}` | {rewrap.module.removeprefix('oemkit.')} | "
               f"{_cell(rewrap.caught)} | {rewrap.raised} | {_cell(why)} |")


def markdown(result: Scan | None = None) -> str:
    """docs/ERRORS.md as the registry and the source tree give it."""
    return "\n".join(_lines(result or scan())) + "\n"


# --------------------------------------------------------------------------- doc sections

#: A generated code table in another document: ``<!-- codes:begin FILTER -->`` … ``<!--
#: codes:end -->``. FILTER names codes (``E_…``, rows in that order) and modules (a dotted
#: name such as ``verify.license``: every code raised there or in its submodules, sorted).
_SECTION = (r"(?P<begin><!-- codes:begin(?P<filter>(?:(?!-->).)*)-->)(?P<body>.*?)"
            r"(?P<end><!-- codes:end -->)")
_MARKER = "<!-- codes:"


def section_codes(spec: str, result: Scan | None = None) -> list[Code]:
    """The registry entries a section's FILTER selects: the ``E_…`` tokens in the order
    given, then every code raised or recorded in the named modules (and their
    submodules), by name. ``result`` (the source scan) is only needed for module tokens.

    Raises:
        ValueError: a token that is no registered code and no module name, or a filter
            that selects nothing.
    """
    import re

    named: list[str] = []
    modules: list[str] = []
    for token in spec.split():
        if token.startswith("E_"):
            if token not in REGISTRY:
                raise ValueError(f"codes section {spec.strip()!r}: {token} is not registered")
            named.append(token)
        elif re.fullmatch(r"[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)*", token):
            modules.append(token.removeprefix("oemkit."))
        else:
            raise ValueError(f"codes section {spec.strip()!r}: {token!r} is neither a code "
                             "nor a module name")
    if modules:
        result = result or scan()
        found = set()
        for code in REGISTRY:
            where = [m.removeprefix("oemkit.") for m in result.modules(code)]
            if any(w == m or w.startswith(m + ".") for w in where for m in modules):
                found.add(code)
        named += sorted(found - set(named))
    if not named:
        raise ValueError(f"codes section {spec.strip()!r} selects no code")
    return [REGISTRY[name] for name in dict.fromkeys(named)]


def section_table(codes: list[Code]) -> str:
    """The Markdown table a section holds: code, exit code(s), meaning, default hint (the
    second exit code of a code raised with two families follows a ``/``; docs/ERRORS.md
    says why)."""
    rows = ["| code | exit | meaning | default hint |", "|---|---|---|---|"]
    for code in codes:
        exits = " / ".join(str(n) for n in (code.exit_code, *(FAMILY_EXIT[a] for a in code.also)))
        rows.append(f"| `{code.name}` | {exits} | {_cell(code.meaning)} | {_cell(code.hint)} |")
    return "\n".join(rows)


def render_sections(text: str, result: Scan | None = None) -> str:
    """``text`` with every codes section's body rewritten from the registry.

    Raises:
        ValueError: a bad filter (:func:`section_codes`), or a ``<!-- codes:`` marker that
            is not part of a well-formed begin/end pair.
    """
    import re

    pattern = re.compile(_SECTION, re.S)

    def body(match: re.Match[str]) -> str:
        table = section_table(section_codes(match["filter"], result))
        return f"{match['begin']}\n\n{table}\n\n{match['end']}"

    out = pattern.sub(body, text)
    if pattern.sub("", text).count(_MARKER):
        raise ValueError("a '<!-- codes:begin FILTER -->' marker without its "
                         "'<!-- codes:end -->' (or the reverse), or a nested one")
    return out


def section_files(paths: list[Path]) -> list[Path]:
    """The Markdown files ``paths`` name (a folder: its ``*.md``), docs/ERRORS.md aside."""
    out: list[Path] = []
    for path in paths:
        found = sorted(path.glob("*.md")) if path.is_dir() else [path]
        out += [p for p in found if p.name != "ERRORS.md"]
    return out


def write_sections(paths: list[Path], result: Scan | None = None) -> list[Path]:
    """Rewrite the codes sections of the Markdown files under ``paths``; the files that
    changed."""
    changed: list[Path] = []
    for path in section_files(paths):
        text = path.read_text(encoding="utf-8")
        if _MARKER not in text:
            continue
        made = render_sections(text, result)
        if made != text:
            path.write_text(made, encoding="utf-8")
            changed.append(path)
    return changed


_USAGE = ("usage: python -m oemkit.codes --markdown > docs/ERRORS.md\n"
          "       python -m oemkit.codes --sections docs/ README.md")


def main(argv: list[str] | None = None) -> int:
    import sys
    from pathlib import Path

    args = sys.argv[1:] if argv is None else argv
    if args == ["--markdown"]:
        sys.stdout.write(markdown())
        return 0
    if len(args) >= 2 and args[0] == "--sections":
        try:
            changed = write_sections([Path(a) for a in args[1:]])
        except (OSError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        for path in changed:
            print(f"updated {path}", file=sys.stderr)
        return 0
    print(_USAGE, file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
