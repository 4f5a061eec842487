"""Corpus cases for the bundle reader (issue 13: cost before trust, PAX numbers, data after
the inner tar's end, the carried CRL's revoked keys, outer names, canonical manifests,
``inspect``).

Attacks that need megabytes (a provenance or signature at the default limits, hundreds of
license members) are shown here with ``--max-member-size`` lowered, and at full size in
``tests/hostile/test_review_reader.py`` and ``benchmarks/hostile_corpus.py``
(``big_cases``), which build them in a temporary directory.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

from hostile.make_corpus import (
    FILES,
    ISSUED,
    Corpus,
    Forge,
    outer,
    pad,
    pax_record,
    raw_block,
    seeded_key,
    ustar,
    zstd_frame,
)
from oemkit._canonical import sha256_hex
from oemkit.crypto.keys import PrivateKeyInfo
from oemkit.release.licensing import issue_crl
from oemkit.release.provenance import make_statement

PREFIX = "review-reader-"
INSPECT = ["inspect", "{corpus}/{file}", "--json"]
#: Lowered member limit for the corpus-sized cost cases: provenance limit 4 KiB, signature
#: member limit min(64 KiB, 4/3 of that + 64 KiB) (``verify.bundle.Limits``).
SMALL_LIMIT = ["--max-member-size", str(64 << 10)]
EOA = bytes(1024)


def stranger(keys: dict[str, PrivateKeyInfo]) -> PrivateKeyInfo:
    """A key no trust root knows."""
    return seeded_key(1313, "stranger")


def provenance_of(parts: list[tuple[str, bytes]], files: int, forge: Forge) -> bytes:
    """A well-formed provenance for ``parts`` listing ``files`` resolved dependencies
    (162 bytes each, like a real bundle's payload files)."""
    byname = dict(parts)
    return make_statement(
        {"oemkit-bundle.json": sha256_hex(byname["oemkit-bundle.json"]),
         "payload.tar.zst": sha256_hex(byname["payload.tar.zst"])},
        spec_name="bundle.yaml", spec_sha256="0" * 64, options={},
        dependencies=[(f"extra/d{i // 1000:03d}/file-{i:06d}.txt", f"{i:064x}", "file")
                      for i in range(files)],
        build_time=forge.when)


def big_provenance_bundle(forge: Forge, keys: dict[str, PrivateKeyInfo], files: int,
                          signer: PrivateKeyInfo | None = None) -> bytes:
    """A bundle whose provenance lists ``files`` dependencies, signed by ``signer``
    (the trusted bundle key when None)."""
    parts = forge.parts()
    provenance = provenance_of(parts, files, forge)
    return forge.bundle(provenance_bytes=provenance,
                        signers=None if signer is None else [signer])


def padded_signature_bundle(forge: Forge, keys: dict[str, PrivateKeyInfo], size: int) -> bytes:
    """A stranger's signature member padded with whitespace to ``size`` bytes."""
    parts = forge.parts(signers=[stranger(keys)])
    out = []
    for name, data in parts:
        if name.startswith("signatures/"):
            data = data.rstrip(b"\n") + b" " * (size - len(data))
        out.append((name, data))
    return outer(out)


def many_values_signature_bundle(forge: Forge, keys: dict[str, PrivateKeyInfo],
                                 values: int) -> bytes:
    """A stranger's signature member whose tlogEntries hold ``values`` zeros."""
    parts = forge.parts(signers=[stranger(keys)])
    out = []
    for name, data in parts:
        if name.startswith("signatures/"):
            doc = json.loads(data)
            doc["verificationMaterial"]["tlogEntries"] = [0] * values
            data = json.dumps(doc, separators=(",", ":")).encode()
        out.append((name, data))
    return outer(out)


def many_signatures_bundle(forge: Forge, keys: dict[str, PrivateKeyInfo], members: int,
                           per_member: int) -> bytes:
    """``members`` signature members of ``per_member`` stranger-shaped (64-byte) signatures
    each: every one is worth a check under every trusted key."""
    parts = forge.parts(signers=[stranger(keys)])
    out = [(n, d) for n, d in parts if not n.startswith("signatures/")]
    template = json.loads(next(d for n, d in parts if n.startswith("signatures/")))
    for m in range(members):
        doc = json.loads(json.dumps(template))
        doc["dsseEnvelope"]["signatures"] = [
            {"keyid": "", "sig": base64.b64encode(bytes([m, i]) * 32).decode()}
            for i in range(per_member)]
        out.append((f"signatures/{m:064x}.sigstore.json",
                    json.dumps(doc, sort_keys=True).encode()))
    return outer(out)


def license_members_bundle(forge: Forge, count: int, size: int) -> bytes:
    """The control bundle with ``count`` appended ``licenses/*`` members of ``size`` bytes
    (outside the signature: anyone can append them)."""
    tail = [(f"licenses/lic-{i:05d}.lic", b"x" * size) for i in range(count)]
    return forge.bundle(tail=tail)


def _header(name: str, size: int, typeflag: bytes = b"0") -> bytes:
    return ustar(name.encode(), size, typeflag=typeflag)


def _entries(files: list[tuple[str, bytes, int]]) -> bytes:
    out = b""
    for name, data, mode in files:
        out += ustar(name.encode(), len(data), mode=b"%07o\x00" % mode) + pad(data)
    return out


def huge_pax_size_inner(digits: int) -> bytes:
    """The corpus files as a tar whose first entry has a PAX ``size=`` of ``digits``
    nines (Python refuses int() of more than 4300 digits)."""
    record = pax_record("size", "9" * digits)
    first, rest = FILES[0], FILES[1:]
    return (_header("././@PaxHeader", len(record), b"x") + pad(record)
            + _entries([first]) + _entries(list(rest)) + EOA)


def raw_payload(inner: bytes, size: int) -> bytes:
    """``inner`` zero-padded to ``size`` bytes in one raw zstd block (a fixed-size
    payload whatever the tar holds, so payloads can be swapped without resizing)."""
    assert len(inner) <= size, (len(inner), size)
    return zstd_frame([raw_block(inner + bytes(size - len(inner)), last=True)])


def cases(c: Corpus, forge: Forge, keys: dict[str, PrivateKeyInfo]) -> None:
    def bundle(name: str, tries: str, data: bytes, code: str | None, exit_code: int = 1,
               **kw: Any) -> None:
        c.add(f"{PREFIX}{name}.oemb", "bundle", tries, data, code, exit_code, **kw)

    def inspect(name: str, tries: str, data: bytes, code: str | None,
                exit_code: int = 1) -> None:
        c.add(f"{PREFIX}inspect-{name}.oemb", "cli", tries, data, code, exit_code,
              command=INSPECT)

    # ---- class 2: cost before trust
    bundle("provenance-over-limit", "a provenance over its limit (here 4 KiB with "
           "--max-member-size 64 KiB; 4 MiB by default), signed by a stranger: refused "
           "from its header", big_provenance_bundle(forge, keys, 30, stranger(keys)),
           "E_MEMBER_SIZE", args=SMALL_LIMIT)
    bundle("signature-over-limit", "a stranger's signature member over its limit (here "
           "64 KiB with --max-member-size 64 KiB; 5.4 MiB by default), padded with spaces",
           padded_signature_bundle(forge, keys, 66_000), "E_MEMBER_SIZE", args=SMALL_LIMIT)
    bundle("control-provenance-at-limit", "control: a provenance of 15 dependencies (3.4 KiB, "
           "under the lowered 4 KiB limit), signed by the trusted key",
           big_provenance_bundle(forge, keys, 15), None, 0, args=SMALL_LIMIT)
    bundle("stranger-provenance-not-json", "a stranger signs a provenance that is not JSON: "
           "the answer is 'untrusted' and the provenance is never parsed",
           forge.bundle(provenance_bytes=b"[" * 5000, signers=[stranger(keys)]),
           "E_SIGNATURE_UNTRUSTED")

    def overflow(statement: dict[str, Any]) -> None:
        statement["predicate"]["runDetails"]["metadata"]["finishedOn"] = \
            "9999-12-31T23:59:59-01:00"

    bundle("stranger-finished-on-overflow", "a stranger signs a provenance whose finishedOn "
           "overflows UTC: untrusted, the time is never read",
           forge.bundle(provenance_edit=overflow, signers=[stranger(keys)]),
           "E_SIGNATURE_UNTRUSTED")
    # a signature member of more than 65,536 JSON values (130 KB and more):
    # test_review_reader.py::test_a_signature_member_of_many_json_values_is_refused_...
    bundle("signature-checks-budget", "2 signature members of 64 stranger signatures each "
           "(128 signatures x 4 trusted keys; a bundle may cost 256 checks)",
           many_signatures_bundle(forge, keys, 2, 64), "E_TOO_MANY_SIGNATURES")
    bundle("license-member-oversize", "an appended licenses/* member of 64 KiB + 1 (an "
           "armored license is at most 64 KiB)", license_members_bundle(forge, 1, 65537),
           "E_MEMBER_SIZE")
    bundle("too-many-license-members", "65 appended, empty licenses/* members (limit 64)",
           license_members_bundle(forge, 65, 0), "E_TOO_MANY_LICENSES")
    # revocations.crl of 64 KiB + 1: test_review_reader.py (the corpus holds one such size)

    # ---- class 4: PAX numbers
    genuine_inner = _entries(list(FILES)) + EOA
    size = 10240
    signed = forge.parts(payload=raw_payload(genuine_inner, size))
    bundle("control-raw-payload", "control: the corpus files in one raw zstd block, zero "
           "padded to 10 KiB (the base of the next case)", outer(signed), None, 0)
    swapped = [(n, raw_payload(huge_pax_size_inner(5000), size) if n == "payload.tar.zst"
                else d) for n, d in signed]
    bundle("pax-size-5000-digits-swapped", "the previous bundle with only its payload bytes "
           "replaced (same size): a PAX size= of 5000 digits; the digest fallback runs",
           outer(swapped), "E_PAYLOAD_DIGEST")
    bundle("pax-size-5000-digits-signed", "a signed payload with a PAX size= of 5000 digits",
           forge.bundle(payload=raw_payload(huge_pax_size_inner(5000), size)),
           "E_PAYLOAD_CORRUPT")
    bundle("pax-size-21-digits-signed", "a signed payload with a PAX size= of 21 digits "
           "(limit 20)", forge.bundle(payload=raw_payload(huge_pax_size_inner(21), size)),
           "E_PAYLOAD_CORRUPT")

    # ---- data after the inner tar's end
    hidden = _entries(list(FILES)) + EOA + _entries([("hidden.sh", b"#!/bin/sh\necho owned\n",
                                                      0o755)]) + EOA
    bundle("payload-entry-after-end", "a signed payload with a whole entry after the "
           "end-of-archive blocks (tar --ignore-zeros would extract it)",
           forge.bundle(payload=raw_payload(hidden, size)), "E_PAYLOAD_CORRUPT")
    bundle("payload-byte-after-end", "a signed payload with one non-zero byte in the padding "
           "after the end-of-archive blocks",
           forge.bundle(payload=raw_payload(genuine_inner + bytes(2000) + b"\x01", size)),
           "E_PAYLOAD_CORRUPT")

    # ---- the carried CRL's revoked keys
    revoking = issue_crl(keys["crl"], 3, revoke_keys=[keys["bundle"].keyid], issued_at=ISSUED)
    bundle("crl-revokes-signing-key", "signed by the bundle key, carrying a CRL (signed by the "
           "crl key) whose revoked_keys lists that key",
           forge.bundle(extra=[("revocations.crl", revoking)]), "E_KEY_REVOKED")
    other = issue_crl(keys["crl"], 3, revoke_keys=[keys["license"].keyid], issued_at=ISSUED)
    bundle("control-crl-revokes-other-key", "control: the carried CRL revokes another key",
           forge.bundle(extra=[("revocations.crl", other)]), None, 0)

    # ---- outer names
    parts = forge.parts()
    for label, suffix in (("newline", "\n"), ("tab", "\t"), ("cr", "\r")):
        renamed = [(n + suffix if n == "sbom.cdx.json" else n, d) for n, d in parts]
        bundle(f"outer-name-trailing-{label}", f"the SBOM member named 'sbom.cdx.json' + "
               f"{label}", outer(renamed), "E_MEMBER_NAME")

    # ---- Windows look-alike payload names
    look = [("run.bat", b"@echo one\r\n", 0o644), ("run.bat.", b"@echo two\r\n", 0o644)]
    bundle("payload-windows-lookalike", "signed payload files run.bat and run.bat. (the "
           "same file on Windows)", forge.bundle(files=look), "E_MANIFEST_INVALID")

    # ---- canonical manifest
    spaced = forge.parts()
    manifest = json.dumps(json.loads(dict(spaced)["oemkit-bundle.json"]), indent=1,
                          sort_keys=True).encode()
    bundle("manifest-not-canonical", "a signed manifest written with whitespace (the same "
           "JSON, not its canonical bytes)", forge.bundle(manifest_bytes=manifest),
           "E_MANIFEST_INVALID")
    escaped = dict(spaced)["oemkit-bundle.json"].replace(b'"name":"hostile"',
                                                         b'"name":"hostil\\u0065"')
    bundle("manifest-escaped-char", "a signed manifest spelling a name character as a \\u "
           "escape", forge.bundle(manifest_bytes=escaped), "E_MANIFEST_INVALID")

    # ---- inspect (no --trust): the verifier's structural checks
    inspect("control", "control: inspect the valid control bundle", forge.bundle(), None, 0)
    inspect("manifest-not-canonical", "inspect a bundle whose manifest is not canonical",
            forge.bundle(manifest_bytes=manifest), "E_MANIFEST_INVALID")
    inspect("name-trailing-newline", "inspect a bundle with a member name ending in a newline",
            outer([(n + "\n" if n == "sbom.cdx.json" else n, d) for n, d in parts]),
            "E_MEMBER_NAME")
    inspect("manifest-not-json", "inspect a bundle whose manifest is not JSON",
            forge.bundle(manifest_bytes=b"{" * 100), "E_MANIFEST_INVALID")
    inspect("member-unlisted", "inspect a bundle carrying a member its manifest does not list",
            forge.bundle(extra=[("trust/root-9.json", b"{}")],
                         manifest_edit=lambda d: d["members"].pop("trust/root-9.json")),
            "E_MEMBER_UNLISTED")


#: Big cases the corpus cannot hold (files over 200 KB), built by the benchmark and the
#: unit tests: (name, what it tries, builder, expected code, CLI args).
BigCase = tuple[str, str, Callable[[Forge, dict[str, PrivateKeyInfo]], bytes], str | None,
                list[str]]


def big_cases() -> list[BigCase]:
    return [
        ("stranger-provenance-4mib", "a stranger signs a 4 MiB provenance (the default limit, "
         "25,000 dependencies of 162 bytes)",
         lambda f, k: big_provenance_bundle(f, k, 25_000, stranger(k)),
         "E_SIGNATURE_UNTRUSTED", []),
        ("stranger-provenance-8mib", "a stranger signs an 8 MiB provenance (over the limit)",
         lambda f, k: big_provenance_bundle(f, k, 52_000, stranger(k)), "E_MEMBER_SIZE", []),
        ("stranger-signature-5mib", "a stranger's signature member padded to 5 MiB (limit "
         "about 5.4 MiB)", lambda f, k: padded_signature_bundle(f, k, 5 << 20),
         "E_SIGNATURE_UNTRUSTED", []),
        ("stranger-signature-8mib", "a stranger's signature member padded to 8 MiB",
         lambda f, k: padded_signature_bundle(f, k, 8 << 20), "E_MEMBER_SIZE", []),
        ("signatures-32-members-at-limit", "32 signature members of 64 stranger signatures "
         "over a 4 MiB provenance", lambda f, k: _many_over_big(f, k), "E_TOO_MANY_SIGNATURES",
         []),
        ("licenses-64-at-limit", "64 appended licenses/* members of 64 KiB (not armored: "
         "verify then judges the first)",
         lambda f, k: license_members_bundle(f, 64, 65536), "E_ARMOR", []),
        ("trusted-provenance-4mib", "control: the trusted key signs a 4 MiB provenance",
         lambda f, k: big_provenance_bundle(f, k, 25_000), None, []),
    ]


def _many_over_big(forge: Forge, keys: dict[str, PrivateKeyInfo]) -> bytes:
    parts = forge.parts()
    provenance = provenance_of(parts, 25_000, forge)
    base = forge.parts(provenance_bytes=provenance, signers=[stranger(keys)])
    out = [(n, d) for n, d in base if not n.startswith("signatures/")]
    template = json.loads(next(d for n, d in base if n.startswith("signatures/")))
    for m in range(32):
        template["dsseEnvelope"]["signatures"] = [
            {"keyid": "", "sig": base64.b64encode(bytes([m, i]) * 32).decode()}
            for i in range(64)]
        out.append((f"signatures/{m:064x}.sigstore.json",
                    json.dumps(template, separators=(",", ":")).encode()))
    return outer(out)
