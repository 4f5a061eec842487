"""The bundle reader against issue 13's findings: cost before trust (signature,
provenance and license members), PAX numbers, data after the inner tar's end, the
carried CRL's revoked keys, outer names, canonical manifests and ``inspect``.

Memory is asserted with tracemalloc (Python allocations, deterministic); time is not
asserted (benchmarks/hostile_corpus.py measures it).
"""

from __future__ import annotations

import io
import json
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from hostile import make_corpus as mc
from hostile import review_reader as rr
from oemkit.cli import app
from oemkit.errors import VerificationError
from oemkit.verify import bundle as vb
from oemkit.verify.bundle import (
    DEFAULT_LIMITS,
    Limits,
    flags_needed,
    inspect_bundle,
    verify_open_bundle,
)

MIB = 1 << 20


@pytest.fixture(scope="module")
def ckeys() -> dict[str, Any]:
    return mc.load_keys()


@pytest.fixture(scope="module")
def forge(ckeys) -> mc.Forge:
    return mc.Forge(ckeys)


@pytest.fixture(scope="module")
def root() -> bytes:
    return (mc.CORPUS / mc.TRUST).read_bytes()


def verdict(data: bytes, root: bytes, limits: Limits | None = None) -> Any:
    return verify_open_bundle(io.BytesIO(data), root, limits=limits)


def refused(data: bytes, root: bytes, code: str, fragment: str = "",
            limits: Limits | None = None) -> VerificationError:
    report = verdict(data, root, limits)
    assert not report.ok, report.to_dict()
    assert report.error is not None
    assert report.error.code == code, report.to_dict()
    assert fragment in report.error.message, report.error.message
    return report.error


def traced_peak(fn: Any) -> tuple[Any, int]:
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        result = fn()
        return result, tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()


def sizes_of(data: bytes) -> dict[str, int]:
    return {name: size for name, _, _, size in mc.member_offsets(data)}


# --------------------------------------------------------------------------- limits


def test_members_read_before_trust_have_small_limits_raised_by_one_flag():
    assert DEFAULT_LIMITS.member_limit("provenance.intoto.json") == 4 * MIB
    assert DEFAULT_LIMITS.member_limit("signatures/x.sigstore.json") == (
        -(-4 * MIB // 3) * 4 + (64 << 10))
    assert DEFAULT_LIMITS.member_limit("licenses/a.lic") == 64 << 10
    assert DEFAULT_LIMITS.member_limit("revocations.crl") == 64 << 10
    assert DEFAULT_LIMITS.member_limit("sbom.cdx.json") == 64 * MIB
    assert DEFAULT_LIMITS.member_limit("payload.tar.zst") == 1 << 40
    raised = Limits(max_metadata_bytes=1 << 30)
    assert raised.member_limit("provenance.intoto.json") == 64 * MIB
    assert raised.member_limit("licenses/a.lic") == 64 << 10  # armored: never larger
    low = Limits(max_metadata_bytes=1024)
    assert low.member_limit("signatures/x.sigstore.json") == 1024


@pytest.mark.parametrize("name", ["provenance.intoto.json",
                                  f"signatures/{'a' * 64}.sigstore.json", "sbom.cdx.json"])
@pytest.mark.parametrize("size", [4 * MIB + 1, 5 * MIB + 12345, 100 * MIB + 7])
def test_flags_needed_names_a_flag_under_which_the_member_fits(name, size):
    members = {"oemkit-bundle.json": 1000, name: size, "payload.tar.zst": 1 << 30}
    flags = flags_needed(members, 10)
    if size <= DEFAULT_LIMITS.member_limit(name):
        assert flags == []
        return
    assert len(flags) == 1 and flags[0].startswith("--max-member-size ")
    value = int(flags[0].split()[1])
    assert value % MIB == 0
    assert Limits(max_metadata_bytes=value).member_limit(name) >= size
    assert Limits(max_metadata_bytes=value - MIB).member_limit(name) < size


def test_a_giant_legitimate_provenance_verifies_with_the_flag_build_names(forge, ckeys, root):
    """27,000 resolved dependencies (4.4 MB, a real bundle of that many files): refused
    by the defaults, accepted under the flag flags_needed computes."""
    data = rr.big_provenance_bundle(forge, ckeys, 27_000)
    sizes = sizes_of(data)
    assert sizes["provenance.intoto.json"] > DEFAULT_LIMITS.max_provenance_bytes
    refused(data, root, "E_MEMBER_SIZE", "provenance.intoto.json")
    flags = flags_needed({n: s for n, s in sizes.items() if not n.startswith("signatures/")},
                         3)
    assert flags == ["--max-member-size 70254592"]  # 67 MiB
    report = verdict(data, root, Limits(max_metadata_bytes=int(flags[0].split()[1])))
    assert report.ok, report.to_dict()


# --------------------------------------------------------------------------- cost before trust


def test_a_strangers_provenance_is_never_parsed(forge, ckeys, root, monkeypatch):
    calls: list[int] = []
    real = vb._statement

    def spy(data: bytes) -> Any:
        calls.append(len(data))
        return real(data)

    monkeypatch.setattr(vb, "_statement", spy)
    data = rr.big_provenance_bundle(forge, ckeys, 25_000, rr.stranger(ckeys))
    assert sizes_of(data)["provenance.intoto.json"] <= DEFAULT_LIMITS.max_provenance_bytes
    (_, peak) = traced_peak(lambda: refused(data, root, "E_SIGNATURE_UNTRUSTED"))
    assert calls == []
    # provenance 4 MB + one 5.4 MB signature member, its text and its decoded payload;
    # before: every member in memory and the 4 MB statement parsed (about 10x its size)
    assert peak < 48 * MIB, peak / MIB
    trusted = rr.big_provenance_bundle(forge, ckeys, 25_000)
    assert verdict(trusted, root).ok and len(calls) == 1


@pytest.mark.parametrize("provenance", [b"[" * 60_000, b"\xff not json"])
def test_a_strangers_unparseable_provenance_is_untrusted(forge, ckeys, root, provenance):
    refused(forge.bundle(provenance_bytes=provenance, signers=[rr.stranger(ckeys)]), root,
            "E_SIGNATURE_UNTRUSTED")


def test_a_trusted_unparseable_provenance_is_still_invalid(forge, root):
    refused(forge.bundle(provenance_bytes=b"[" * 60_000), root, "E_PROVENANCE_INVALID")


def test_signature_members_at_the_limit_cost_a_bounded_number_of_checks(
        forge, ckeys, root, monkeypatch):
    """32 members of 64 signatures over a 4 MB provenance (169 MiB of metadata): each
    member is read, judged and dropped in turn, and the checks stop at the budget."""
    import oemkit.crypto.dsse as dsse

    checks: list[int] = []
    real = dsse.verify_signature

    def spy(*args: Any) -> bool:
        checks.append(args[1] == dsse.INTOTO_PAYLOAD_TYPE)
        return real(*args)

    monkeypatch.setattr(dsse, "verify_signature", spy)
    data = rr._many_over_big(forge, ckeys)
    sizes = sizes_of(data)
    assert sum(s for n, s in sizes.items() if n.startswith("signatures/")) > 160 * MIB
    budget = DEFAULT_LIMITS.max_signature_checks(sizes["provenance.intoto.json"])
    assert budget == 33  # 32 provenances at the 4 MiB limit, this one is 4.05 MB
    (_, peak) = traced_peak(lambda: refused(data, root, "E_TOO_MANY_SIGNATURES",
                                            f"more than {budget} signature checks"))
    assert sum(checks) == budget
    assert peak < 48 * MIB, peak / MIB


def test_a_signed_bundle_costs_one_check_per_signature(forge, ckeys, root, monkeypatch):
    import oemkit.crypto.dsse as dsse

    checks: list[int] = []
    real = dsse.verify_signature
    monkeypatch.setattr(dsse, "verify_signature",  # bundle signatures, not the pinned root's
                        lambda *a: checks.append(a[1] == dsse.INTOTO_PAYLOAD_TYPE) or real(*a))
    signers = [ckeys["license"], ckeys["bundle"], ckeys["crl"]]
    report = verdict(forge.bundle(signers=signers), root)
    assert report.ok, report.to_dict()
    assert sum(checks) == 3


def test_many_small_signatures_hit_the_budget_before_the_work(forge, ckeys, root):
    data = rr.many_signatures_bundle(forge, ckeys, 5, 64)
    refused(data, root, "E_TOO_MANY_SIGNATURES", "more than 256 signature checks")
    assert verdict(rr.many_signatures_bundle(forge, ckeys, 1, 60), root).error.code == (
        "E_SIGNATURE_UNTRUSTED")  # 60 signatures x 4 keys = 240 checks: within the budget


def test_a_signature_member_of_many_json_values_is_refused_before_parsing(
        forge, ckeys, root, monkeypatch):
    import oemkit.crypto.dsse as dsse

    parsed: list[str] = []
    real = dsse.parse_sigstore_bundle
    monkeypatch.setattr(vb, "parse_sigstore_bundle",
                        lambda data, what: parsed.append(what) or real(data, what))
    refused(rr.many_values_signature_bundle(forge, ckeys, 70_000), root, "E_ENVELOPE",
            "70016 JSON values")
    assert parsed == []
    refused(rr.many_values_signature_bundle(forge, ckeys, 60_000), root,
            "E_SIGNATURE_UNTRUSTED")


@pytest.mark.parametrize(("name", "size", "limit"), [
    ("provenance.intoto.json", 4 * MIB + 1, 4 * MIB),
    ("signatures/", (6 * MIB), DEFAULT_LIMITS.max_signature_bytes),
])
def test_members_over_their_limit_are_refused_from_the_header(forge, ckeys, root, name, size,
                                                              limit):
    if name == "signatures/":
        data = rr.padded_signature_bundle(forge, ckeys, size)
    else:
        data = rr.big_provenance_bundle(forge, ckeys, 26_000, rr.stranger(ckeys))
    (_, peak) = traced_peak(lambda: refused(data, root, "E_MEMBER_SIZE", f"limit of {limit}"))
    assert peak < 1 * MIB  # nothing read


def test_a_carried_crl_is_bounded_like_an_armored_file(forge, root):
    refused(forge.bundle(extra=[("revocations.crl", b"x" * 65537)]), root, "E_MEMBER_SIZE",
            "revocations.crl declares 65537 bytes, over the limit of 65536")


def test_license_members_are_bounded_in_size_and_count(forge, root):
    refused(rr.license_members_bundle(forge, 1, 65537), root, "E_MEMBER_SIZE",
            "licenses/lic-00000.lic")
    refused(rr.license_members_bundle(forge, 65, 10), root, "E_TOO_MANY_LICENSES",
            "65 license members (limit 64)")
    at_limit = rr.license_members_bundle(forge, 64, 65536)
    (report, peak) = traced_peak(lambda: verdict(at_limit, root))
    assert report.ok and len(report.licenses) == 64
    assert peak < 8 * MIB  # before: up to 256 MiB of licenses/* read into memory


# --------------------------------------------------------------------------- PAX numbers


def test_a_pax_size_beyond_pythons_int_limit_is_corrupt_not_internal(forge, root):
    data = forge.bundle(payload=rr.raw_payload(rr.huge_pax_size_inner(5000), 10240))
    refused(data, root, "E_PAYLOAD_CORRUPT", "invalid size in a PAX header")
    refused(forge.bundle(payload=rr.raw_payload(rr.huge_pax_size_inner(21), 10240)), root,
            "E_PAYLOAD_CORRUPT", "invalid size in a PAX header")
    assert verdict(forge.bundle(payload=rr.raw_payload(rr.huge_pax_size_inner(20), 10240)),
                   root).error.code != "E_INTERNAL"


def test_a_swapped_in_payload_with_absurd_numbers_ends_in_the_digest_check(forge, root):
    genuine = forge.parts(payload=rr.raw_payload(rr._entries(list(mc.FILES)) + rr.EOA, 10240))
    assert verdict(mc.outer(genuine), root).ok
    swapped = [(n, rr.raw_payload(rr.huge_pax_size_inner(5000), 10240)
                if n == "payload.tar.zst" else d) for n, d in genuine]
    refused(mc.outer(swapped), root, "E_PAYLOAD_DIGEST",
            "reading it failed with E_PAYLOAD_CORRUPT")


@pytest.mark.parametrize("exc", [ValueError("x"), OverflowError("x"), KeyError("x"),
                                 UnicodeDecodeError("utf-8", b"", 0, 1, "x")])
def test_any_exception_in_the_payload_reader_ends_in_the_digest_check(
        forge, root, monkeypatch, exc):
    def boom(data: bytes) -> Any:
        raise exc

    monkeypatch.setattr("oemkit.verify.payload._pax_records", boom)
    inner = rr.huge_pax_size_inner(10)
    genuine = forge.parts(payload=rr.raw_payload(rr._entries(list(mc.FILES)) + rr.EOA, 10240))
    swapped = [(n, rr.raw_payload(inner, 10240) if n == "payload.tar.zst" else d)
               for n, d in genuine]
    refused(mc.outer(swapped), root, "E_PAYLOAD_DIGEST", "reading it failed with "
            "E_PAYLOAD_CORRUPT")
    refused(forge.bundle(payload=rr.raw_payload(inner, 10240)), root, "E_PAYLOAD_CORRUPT",
            type(exc).__name__)


def test_outer_pax_size_digits_are_bounded(forge, root):
    record = mc.pax_record("size", "9" * 25)
    header = mc.ustar(b"././@PaxHeader", len(record), typeflag=b"x")
    refused(header + mc.pad(record) + mc.outer(forge.parts()), root, "E_TAR_HEADER",
            "exactly one size record")


# --------------------------------------------------------------------------- inner tar end


def test_an_entry_after_the_inner_end_of_archive_is_refused(forge, root, tmp_path):
    hidden = rr._entries(list(mc.FILES)) + rr.EOA + rr._entries(
        [("hidden.sh", b"#!/bin/sh\n", 0o755)]) + rr.EOA
    data = forge.bundle(payload=rr.raw_payload(hidden, 10240))
    refused(data, root, "E_PAYLOAD_CORRUPT", "data after the end-of-archive marker")
    bundle = tmp_path / "hidden.oemb"
    bundle.write_bytes(data)
    (tmp_path / "trust.json").write_bytes(root)
    dest = tmp_path / "dest"
    result = CliRunner().invoke(app, ["unpack", str(bundle), str(dest), "--trust",
                                      str(tmp_path / "trust.json"), "--json"])
    assert result.exit_code == 1, result.output
    assert json.loads(result.stdout)["error"]["code"] == "E_PAYLOAD_CORRUPT"
    assert not dest.exists() and sorted(p.name for p in tmp_path.iterdir()) == [
        "hidden.oemb", "trust.json"]


def test_only_zero_padding_may_follow_the_inner_end(forge, root):
    inner = rr._entries(list(mc.FILES)) + rr.EOA
    assert verdict(forge.bundle(payload=rr.raw_payload(inner + bytes(4000), 10240)), root).ok
    for at in (0, 511, 4000):
        tail = bytearray(4001)
        tail[at] = 0x20
        refused(forge.bundle(payload=rr.raw_payload(inner + bytes(tail), 10240)), root,
                "E_PAYLOAD_CORRUPT", "data after the end-of-archive marker")


# --------------------------------------------------------------------------- CRL revoked_keys


def test_a_carried_crl_revoking_the_signing_key_rejects_the_signature(forge, ckeys, root):
    revoking = mc.issue_crl(ckeys["crl"], 3, revoke_keys=[ckeys["bundle"].keyid],
                            issued_at=mc.ISSUED)
    data = forge.bundle(extra=[("revocations.crl", revoking)])
    error = refused(data, root, "E_KEY_REVOKED", ckeys["bundle"].keyid[:16])
    assert error.actual == ckeys["bundle"].keyid and "revocations.crl" in error.message
    # the same key revoked by a CRL nobody trusted signing counts for nothing
    forged = mc.issue_crl(rr.stranger(ckeys), 3, revoke_keys=[ckeys["bundle"].keyid],
                          issued_at=mc.ISSUED)
    report = verdict(forge.bundle(extra=[("revocations.crl", forged)]), root)
    assert report.error is not None and report.error.code != "E_KEY_REVOKED"
    other = mc.issue_crl(ckeys["crl"], 3, revoke_keys=[ckeys["license"].keyid],
                         issued_at=mc.ISSUED)
    assert verdict(forge.bundle(extra=[("revocations.crl", other)]), root).ok


def test_a_bad_carried_crl_keeps_its_own_code_and_place(forge, ckeys, root):
    """The CRL is judged before the signatures but reported where it always was."""
    lic_signed = mc.issue_crl(ckeys["license"], 3, issued_at=mc.ISSUED)
    report = verdict(forge.bundle(extra=[("revocations.crl", lic_signed)]), root)
    assert report.error.code == "E_KEY_USAGE"
    assert [c.name for c in report.checks if c.status == "pass"][-1] == "manifest"


# --------------------------------------------------------------------------- outer names


@pytest.mark.parametrize("suffix", ["\n", "\t", "\r", "\x7f", "\x01", " "])
def test_outer_member_names_with_control_characters_are_refused(forge, root, suffix):
    parts = [(n + suffix if n == "sbom.cdx.json" else n, d) for n, d in forge.parts()]
    refused(mc.outer(parts), root, "E_MEMBER_NAME", "is not allowed")


# --------------------------------------------------------------------------- Windows names


def test_windows_look_alike_payload_names_are_refused(forge, root):
    look = [("run.bat", b"one", 0o644), ("run.bat.", b"two", 0o644)]
    refused(forge.bundle(files=look), root, "E_MANIFEST_INVALID")
    # listed once in the manifest, twice in the tar: the reader refuses the second
    inner = mc.tar_bytes([mc.regular(p, d, m) for p, d, m in look])
    refused(forge.bundle(inner=inner, entries=[mc.entry("run.bat", b"one")]), root,
            "E_PAYLOAD_UNSAFE", "run.bat.")


# --------------------------------------------------------------------------- canonical manifest


def test_a_signed_manifest_that_is_not_canonical_json_is_refused(forge, root):
    canonical = dict(forge.parts())["oemkit-bundle.json"]
    spaced = json.dumps(json.loads(canonical), indent=1, sort_keys=True).encode()
    refused(forge.bundle(manifest_bytes=spaced), root, "E_MANIFEST_INVALID",
            "not canonical JSON")
    unsorted = json.dumps(dict(reversed(list(json.loads(canonical).items()))),
                          separators=(",", ":")).encode()
    refused(forge.bundle(manifest_bytes=unsorted), root, "E_MANIFEST_INVALID", "at byte 2")
    refused(forge.bundle(manifest_bytes=canonical + b"\n"), root, "E_MANIFEST_INVALID",
            "not canonical JSON")
    assert verdict(forge.bundle(manifest_bytes=canonical), root).ok


# --------------------------------------------------------------------------- inspect


def write(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "b.oemb"
    path.write_bytes(data)
    return path


def test_inspect_reads_only_the_manifest(forge, tmp_path, monkeypatch):
    read: list[str] = []
    real = vb.read_member
    monkeypatch.setattr(vb, "read_member", lambda h, m: read.append(m.name) or real(h, m))
    info = inspect_bundle(write(tmp_path, forge.bundle()))
    assert read == ["oemkit-bundle.json"]
    assert info.verified is False and info.manifest.name == "hostile"


@pytest.mark.parametrize(("make", "code", "fragment"), [
    (lambda f, k: f.bundle(manifest_bytes=json.dumps(json.loads(dict(f.parts())[
        "oemkit-bundle.json"]), indent=1).encode()), "E_MANIFEST_INVALID", "canonical"),
    (lambda f, k: f.bundle(manifest_bytes=b"{" * 100), "E_MANIFEST_INVALID", ""),
    (lambda f, k: mc.outer([(n + "\n" if n == "sbom.cdx.json" else n, d)
                            for n, d in f.parts()]), "E_MEMBER_NAME", ""),
    (lambda f, k: rr.padded_signature_bundle(f, k, 6 * MIB), "E_MEMBER_SIZE", "signatures/"),
    (lambda f, k: rr.license_members_bundle(f, 65, 10), "E_TOO_MANY_LICENSES", ""),
    (lambda f, k: f.bundle(extra=[("trust/root-9.json", b"{}")],
                           manifest_edit=lambda d: d["members"].pop("trust/root-9.json")),
     "E_MEMBER_UNLISTED", "trust/root-9.json"),
    (lambda f, k: f.bundle(manifest_edit=lambda d: d["members"]["payload.tar.zst"].update(
        size=1)), "E_PAYLOAD_DIGEST", "the manifest says 1"),
])
def test_inspect_applies_the_verifiers_structural_checks(forge, ckeys, tmp_path, make, code,
                                                         fragment):
    with pytest.raises(VerificationError) as caught:
        inspect_bundle(write(tmp_path, make(forge, ckeys)))
    assert caught.value.code == code and fragment in caught.value.message
