"""The license API inside an installed slot (issue 21 item 3): ``oemkit install`` gives the
slot's venv this host's oemkit and what ``oemkit.license`` imports, repacked offline from
the installed files (:mod:`oemkit.host.selfwheel`), so an OEM runtime running there can
check its license; and the first ``verify`` call stays off the heavy modules."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from helpers import REPO
from oemkit.errors import EnvironmentProblem
from oemkit.host.install import install

UTC = dt.timezone.utc

#: Run by the slot's Python: verify a license (state file, CRL-free), then an expired one.
CHECK = """
import datetime as dt, json, sys
import oemkit, oemkit.license
lic, expired, trust, state = sys.argv[1:5]
verdict = oemkit.license.verify(lic, trust=trust, state=state, host={})
verdict.require_feature("batch")
verdict.require_limit("seats", 40)
try:
    oemkit.license.verify(expired, trust=trust, state=None, host={})
    refused = None
except oemkit.license.LicenseError as exc:
    refused = [exc.code, exc.message]
print(json.dumps({"status": verdict.status, "license_id": verdict.claims.license_id,
                  "oemkit": oemkit.__file__, "prefix": sys.prefix, "refused": refused}))
"""

#: Modules the license check must not import: the heavy ones (issue 4), and what oemkit's
#: file helpers used to import at module level for other work (queue and threading for the
#: background readers; tempfile, which brings shutil, bz2 and lzma, only when writing).
HEAVY = ("onnxruntime", "numpy", "cyclonedx", "jsonschema", "jsonschema_rs",
         "securesystemslib", "in_toto", "typer", "rich", "yaml", "zstandard", "packaging",
         "psutil")
OFF_THE_PATH = ("queue", "threading", "tempfile", "shutil", "bz2", "lzma")


def _probe_wheel(path: Path) -> None:
    name, dist = "oemkit_probe", "oemkit_probe-1.0.dist-info"
    files = {f"{name}/__init__.py": "VALUE = 42\n",
             f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n",
             f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                              "Tag: py3-none-any\n"}
    with zipfile.ZipFile(path, "w") as zf:
        for n, text in files.items():
            zf.writestr(n, text)
        zf.writestr(f"{dist}/RECORD", "".join(f"{n},,\n" for n in files) + f"{dist}/RECORD,,\n")


@pytest.fixture(scope="module")
def trust_doc(keys, trust_v2) -> bytes:
    """The demo's root (root and bundle keys) plus the example license key."""
    from oemkit.release.trust import add_key
    from oemkit.verify.trust import parse_root

    return add_key(parse_root(trust_v2), keys["license"].public, ["license"], [keys["root"]],
                   name="license")


@pytest.fixture(scope="module")
def wheel_bundle(tmp_path_factory, keys) -> Path:
    """example-v1 with a one-wheel wheelhouse: install gives its slot a venv."""
    from oemkit.release.bundle import build_bundle
    from oemkit.release.sign import sign_bundle

    tmp = tmp_path_factory.mktemp("wheel-bundle")
    spec = tmp / "spec"
    shutil.copytree(REPO / "bundles" / "example-v1", spec)
    (spec / "wheels").mkdir()
    _probe_wheel(spec / "wheels" / "oemkit_probe-1.0-py3-none-any.whl")
    (spec / "bundle.yaml").write_text((spec / "bundle.yaml").read_text()
                                      + "wheelhouse: wheels\n")
    bundle = build_bundle(spec, tmp / "dist").path
    sign_bundle(bundle, [keys["bundle"]])
    return bundle


@pytest.fixture(scope="module")
def installed(tmp_path_factory, wheel_bundle, trust_doc):
    """The bundle installed into a prefix (no smoke: its venv has no onnxruntime)."""
    tmp = tmp_path_factory.mktemp("slot")
    trust = tmp / "trust-root.json"
    trust.write_bytes(trust_doc)
    report = install(wheel_bundle, tmp / "prefix", trust, skip_smoke=True)
    assert report.ok, report.to_dict()
    return report, tmp / "prefix"


def _issue(keys, path: Path, expires: dt.datetime, issued: dt.datetime) -> Path:
    import oemkit.license

    path.write_bytes(oemkit.license.issue(
        key=keys["license"], customer="acme", customer_name="ACME Corp", product="vision",
        expires=expires, issued_at=issued, features=["batch"], limits={"seats": 50},
        license_id=path.stem))
    return path


def test_the_slot_venv_verifies_a_real_license(installed, keys, tmp_path, trust_doc):
    report, prefix = installed
    (check,) = [c for c in report.checks if c.name == "license api"]
    assert check.status == "pass", check
    assert check.detail.startswith("import oemkit.license works in the slot's venv; copied "
                                   "from this host: oemkit 0.1.0")
    for dist in ("cryptography", "rfc8785", "cffi"):
        assert f" {dist} " in check.detail, check.detail
    now = dt.datetime.now(UTC).replace(microsecond=0)
    lic = _issue(keys, tmp_path / "acme-vision.lic", now + dt.timedelta(days=365),
                 now - dt.timedelta(days=1))
    old = _issue(keys, tmp_path / "acme-old.lic", dt.datetime(2020, 6, 30, tzinfo=UTC),
                 dt.datetime(2020, 1, 1, tzinfo=UTC))
    trust = tmp_path / "trust-root.json"
    trust.write_bytes(trust_doc)
    python = prefix / "current" / "venv" / "bin" / "python"
    out = subprocess.run([str(python), "-I", "-c", CHECK, str(lic), str(old), str(trust),
                          str(tmp_path / "state.json")], capture_output=True, text=True,
                         cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    venv = (prefix / "current" / "venv").resolve()
    assert Path(doc["prefix"]).resolve() == venv
    assert Path(doc["oemkit"]).resolve().is_relative_to(venv)  # the slot's copy, not ours
    assert doc["status"] == "valid" and doc["license_id"] == "acme-vision"
    assert doc["refused"][0] == "E_EXPIRED"
    # the copy carries the package and its metadata, not the installer's leftovers
    site = next((venv / "lib").glob("python*/site-packages"))
    meta = site / "oemkit-0.1.0.dist-info"
    assert (meta / "METADATA").is_file() and (meta / "RECORD").is_file()
    assert not list(site.glob("*oemkit*.pth"))  # no link back to the checkout
    assert not (prefix / "current" / ".license-api").exists()


def test_a_dependency_that_cannot_be_copied_is_a_warning_not_a_refusal(
        wheel_bundle, trust_doc, tmp_path, monkeypatch):
    import oemkit.host.selfwheel as selfwheel

    monkeypatch.setattr(selfwheel, "LICENSE_API_NEEDS", ("cryptography", "no-such-dist"))
    trust = tmp_path / "trust-root.json"
    trust.write_bytes(trust_doc)
    report = install(wheel_bundle, tmp_path / "prefix", trust, skip_smoke=True)
    assert report.ok and report.switched, report.to_dict()
    (check,) = [c.to_dict() for c in report.checks if c.name == "license api"]
    assert check == {
        "name": "license api", "status": "warn", "code": "E_SLOT_LICENSE_API",
        "detail": "the slot's venv cannot import oemkit.license: cannot copy no-such-dist "
                  "from this host into the slot: it is not installed for this Python",
        "hint": "ship a no-such-dist wheel in the bundle's wheelhouse (oemkit wheelhouse "
                "fetch), or install with --system-site-packages"}


def test_the_distributions_the_license_api_needs():
    from oemkit.host.selfwheel import license_api_distributions

    names = [n.lower() for n in license_api_distributions()]
    assert names[0] == "oemkit" and {"cryptography", "rfc8785", "cffi"} <= set(names)
    assert not {"typer", "rich", "numpy", "onnxruntime", "securesystemslib"} & set(names)


def test_a_regular_install_is_repacked_from_its_record(tmp_path):
    import base64
    import hashlib

    from oemkit.host.selfwheel import wheel_of_installed

    made = wheel_of_installed("rfc8785", tmp_path)
    assert made.path.name == f"rfc8785-{made.version}-py3-none-any.whl" and not made.editable
    with zipfile.ZipFile(made.path) as zf:
        names = zf.namelist()
        record = zf.read(f"rfc8785-{made.version}.dist-info/RECORD").decode()
        assert "rfc8785/__init__.py" in names
        assert not [n for n in names if n.endswith((".pyc", "/INSTALLER", "/direct_url.json"))]
        for line in record.splitlines():
            name, digest, size = line.rsplit(",", 2)
            if digest:
                data = zf.read(name)
                want = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
                assert digest == f"sha256={want.decode()}" and int(size) == len(data)


def test_a_distribution_that_is_not_installed(tmp_path):
    from oemkit.host.selfwheel import wheel_of_installed

    with pytest.raises(EnvironmentProblem) as err:
        wheel_of_installed("no-such-dist", tmp_path)
    assert err.value.code == "E_SLOT_LICENSE_API"
    assert err.value.message == ("cannot copy no-such-dist from this host into the slot: it "
                                 "is not installed for this Python")


@pytest.mark.parametrize("state", ["none", "file"])
def test_the_first_call_stays_off_the_heavy_modules(keys, tmp_path, trust_doc, state):
    now = dt.datetime.now(UTC).replace(microsecond=0)
    lic = _issue(keys, tmp_path / "acme-vision.lic", now + dt.timedelta(days=365),
                 now - dt.timedelta(days=1))
    trust = tmp_path / "trust-root.json"
    trust.write_bytes(trust_doc)
    code = ("import json, sys, oemkit.license\n"
            "state = None if sys.argv[3] == 'none' else sys.argv[3]\n"
            "v = oemkit.license.verify(sys.argv[1], trust=sys.argv[2], state=state)\n"
            "print(json.dumps([v.status, sorted({m.partition('.')[0] for m in sys.modules}),\n"
            "                  'cryptography.hazmat.primitives.serialization' in sys.modules]))")
    out = subprocess.run([sys.executable, "-I", "-c", code, str(lic), str(trust),
                          "none" if state == "none" else str(tmp_path / "state.json")],
                         capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    status, modules, serialization = json.loads(out.stdout)
    assert status == "valid"
    assert [m for m in HEAVY if m in modules] == []
    # public keys are read without cryptography's serialization package (its SSH and cipher
    # modules cost about 15 ms): crypto.keys reads the two SPKI encodings itself
    assert serialization is False
    # tempfile (and shutil, bz2, lzma) only where the state file is written
    off = [m for m in OFF_THE_PATH if m in modules]
    assert off == ([] if state == "none" else ["tempfile", "shutil", "bz2", "lzma"])
