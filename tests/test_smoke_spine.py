from oemkit.verify.bundle import verify_bundle


def test_signed_example_verifies(signed_bundle, trust_file):
    report = verify_bundle(signed_bundle, trust_file)
    assert report.ok, report.to_dict()
    assert [c.name for c in report.checks] == [
        "archive structure", "trust root", "signatures", "provenance", "manifest", "sbom",
        "payload"]
