"""`oemkit image`: the container image as an OCI image layout, read back by outside tools
(umoci unpacks it, skopeo inspects it), deterministic, its SBOM attached as a referrer."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from helpers import REPO, read_members, replace_member, write_members
from oemkit.cli import app

runner = CliRunner()
#: .ci/run installs umoci and skopeo (Debian) where they are missing.
UMOCI = shutil.which("umoci")
SKOPEO = shutil.which("skopeo")
PY = f"{sys.version_info.major}.{sys.version_info.minor}"
SITE = f"opt/oemkit/venv/lib/python{PY}/site-packages"


def cli(*args):
    result = runner.invoke(app, [str(a) for a in args])
    assert "Traceback" not in result.output, result.output
    return result


def need(tool: str | None, name: str) -> str:
    if tool is None:
        pytest.skip(f"{name} is not installed (.ci/run installs Debian's {name})")
    return tool


def run(*args: str | Path) -> str:
    done = subprocess.run([str(a) for a in args], capture_output=True, text=True, check=False)
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """oemkit's wheel, built once from this checkout (offline, no build isolation)."""
    out = tmp_path_factory.mktemp("wheel")
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
        "--no-index", "-q", "-w", out, REPO)
    (found,) = out.glob("oemkit-*.whl")
    return found


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """A small Python base image made by umoci: /usr/local/bin/python3.X (a link, as
    the official images have one), /tmp, /etc/os-release; Env PATH."""
    umoci = need(UMOCI, "umoci")
    work = tmp_path_factory.mktemp("base")
    rootfs = work / "rootfs"
    (rootfs / "usr/local/bin").mkdir(parents=True)
    (rootfs / "tmp").mkdir()
    (rootfs / "etc").mkdir()
    (rootfs / "etc/os-release").write_text("ID=oemkit-test\n")
    os.symlink("/usr/bin/python3", rootfs / f"usr/local/bin/python{PY}")
    layout = work / "layout"
    run(umoci, "init", "--layout", layout)
    run(umoci, "new", "--image", f"{layout}:py")
    run(umoci, "insert", "--rootless", "--image", f"{layout}:py", rootfs, "/")
    run(umoci, "config", "--image", f"{layout}:py", "--config.env",
        "PATH=/usr/local/bin:/usr/bin:/bin", "--config.env", f"PYTHON_VERSION={PY}")
    run(umoci, "gc", "--layout", layout)
    return layout


def build(bundle, base, trust, out, wheel, *extra):
    return cli("image", bundle, "--base", f"{base}:py", "--trust", trust, "--out", out,
               "--oemkit-wheel", wheel, "--json", *extra)


def test_the_image_unpacks_where_the_deployment_expects(signed_bundle, trust_file, base,
                                                        wheel, tmp_path, monkeypatch):
    # a caller's bytecode prefix must not send the image's bytecode elsewhere
    monkeypatch.setenv("PYTHONPYCACHEPREFIX", str(tmp_path / "elsewhere"))
    out = tmp_path / "image"
    r = build(signed_bundle, base, trust_file, out, wheel, "--source-date-epoch", "1700000000")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["tag"] == "0.2.0" and doc["python"] == f"/usr/local/bin/python{PY}"
    assert [layer["role"] for layer in doc["layers"]] == ["oemkit", "bundle"]
    assert doc["created"] == "2023-11-14T22:13:20Z"

    unpacked = tmp_path / "unpacked"
    run(need(UMOCI, "umoci"), "unpack", "--rootless", "--image", f"{out}:0.2.0", unpacked)
    rootfs = unpacked / "rootfs"
    venv = rootfs / "opt/oemkit/venv"
    assert os.readlink(venv / "bin/python") == f"/usr/local/bin/python{PY}"
    assert "home = /usr/local/bin\n" in (venv / "pyvenv.cfg").read_text()
    assert (rootfs / SITE / "oemkit/__init__.py").is_file()
    assert (rootfs / SITE / "oemkit/site/image.py").is_file()
    # bytecode compiled at build time (the root filesystem is read-only), for the image's path
    import marshal

    pyc = rootfs / SITE / f"oemkit/__pycache__/__init__.cpython-{PY.replace('.', '')}.pyc"
    code = marshal.loads(pyc.read_bytes()[16:])
    assert code.co_filename == f"/{SITE}/oemkit/__init__.py"
    assert not doc["notes"]
    script = (venv / "bin/oemkit").read_text()
    assert script.startswith("#!/opt/oemkit/venv/bin/python\n") and "oemkit._entry" in script
    baked = rootfs / "opt/oemkit/bundle/example-0.2.0.oemb"
    assert baked.read_bytes() == signed_bundle.read_bytes()
    assert (rootfs / "opt/oemkit/bundle/payload/model/model.onnx").is_file()
    assert (rootfs / "etc/oemkit/trust/trust-root.json").read_bytes() == trust_file.read_bytes()
    assert (rootfs / "etc/os-release").is_file()  # the base's layer is there too
    assert os.lstat(baked).st_mtime == 1_700_000_000

    # the runtime config runs what the Deployment runs, as a non-root user
    process = json.loads((unpacked / "config.json").read_text())["process"]
    assert process["user"]["uid"] == 65532 and process["user"]["gid"] == 65532
    k8s = tmp_path / "k8s"
    assert cli("deploy", "kubernetes", signed_bundle, "--trust", trust_file, "--image", "x",
               "--out", k8s).exit_code == 0
    container = yaml.safe_load((k8s / "deployment.yaml").read_text())[
        "spec"]["template"]["spec"]["containers"][0]
    assert process["args"][:3] == container["command"]
    assert process["args"][3:7] == container["args"][:4]  # serve BUNDLE --trust ROOT
    for path in (container["args"][1], container["args"][3], container["command"][0]):
        assert os.path.lexists(rootfs / path.lstrip("/")), path
    for env in ("PYTHONDONTWRITEBYTECODE=1", "PATH=/opt/oemkit/venv/bin:/usr/local/bin:"
                "/usr/bin:/bin", f"PYTHON_VERSION={PY}"):
        assert env in process["env"]

    # the image's oemkit, on this host's interpreter, verifies the image's bundle
    env = {**os.environ, "PYTHONPATH": str(rootfs / SITE)}
    done = subprocess.run([sys.executable, "-c", "import oemkit; print(oemkit.__file__)"],
                          capture_output=True, text=True, env=env, check=True)
    assert done.stdout.strip().startswith(str(rootfs))
    done = subprocess.run([sys.executable, "-m", "oemkit", "verify", baked, "--trust",
                           rootfs / "etc/oemkit/trust/trust-root.json", "--json"],
                          capture_output=True, text=True, env=env, check=False)
    assert done.returncode == 0 and json.loads(done.stdout)["ok"], done.stderr

    if SKOPEO is not None:  # .ci/run installs skopeo
        seen = json.loads(run(SKOPEO, "inspect", f"oci:{out}:0.2.0"))
        assert seen["Digest"] == doc["manifest_digest"]
        assert seen["Labels"]["org.opencontainers.image.version"] == "0.2.0"
        assert len(seen["Layers"]) == 3


def test_two_builds_give_the_same_digest(signed_bundle, trust_file, base, wheel, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    ra, rb = (build(signed_bundle, base, trust_file, out, wheel) for out in (a, b))
    assert ra.exit_code == rb.exit_code == 0, ra.output + rb.output
    da, db = json.loads(ra.stdout), json.loads(rb.stdout)
    assert da["manifest_digest"] == db["manifest_digest"]
    assert da["sbom_manifest_digest"] == db["sbom_manifest_digest"]
    assert (a / "index.json").read_bytes() == (b / "index.json").read_bytes()
    assert sorted(p.name for p in (a / "blobs/sha256").iterdir()) == \
        sorted(p.name for p in (b / "blobs/sha256").iterdir())


def test_the_sbom_is_a_referrer_of_the_image(signed_bundle, trust_file, base, wheel,
                                            tmp_path):
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    out = tmp_path / "image"
    r = build(signed_bundle, base, trust_file, out, wheel)
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    index = json.loads((out / "index.json").read_text())
    image, referrer = index["manifests"]
    assert image["annotations"]["org.opencontainers.image.ref.name"] == "0.2.0"
    assert referrer["artifactType"] == "application/vnd.cyclonedx+json"

    def blob(digest: str) -> bytes:
        return (out / "blobs/sha256" / digest.removeprefix("sha256:")).read_bytes()

    manifest = json.loads(blob(referrer["digest"]))
    assert manifest["subject"] == {"mediaType": image["mediaType"], "digest": image["digest"],
                                   "size": image["size"]}
    assert image["digest"] == doc["manifest_digest"]
    (layer,) = manifest["layers"]
    sbom_bytes = blob(layer["digest"])
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(sbom_bytes.decode()) is None
    sbom = json.loads(sbom_bytes)
    original = json.loads(dict(read_members(signed_bundle))["sbom.cdx.json"])
    assert sbom["metadata"]["component"] == original["metadata"]["component"]
    hashes = {c["hashes"][0]["content"] for c in sbom["components"] if c.get("hashes")}
    for written in doc["layers"]:
        assert written["digest"].removeprefix("sha256:") in hashes
    assert any(c["name"] == "oemkit" and c.get("purl") == "pkg:pypi/oemkit@0.1.0"
               for c in sbom["components"])


def test_layers_split_dependencies_from_oemkit(tmp_path):
    """With a wheelhouse, every distribution but oemkit goes to the dependencies layer."""
    from oemkit.site.image import Base, _venv_layers

    site = tmp_path / "site"
    for name, top in (("oemkit", "oemkit"), ("tinydep", "tinydep")):
        info = site / f"{name}-1.0.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
        (info / "RECORD").write_text(f"{top}/__init__.py,,\n{info.name}/METADATA,,\n"
                                     f"../../bin/{name},,\n")
        (info / "entry_points.txt").write_text(f"[console_scripts]\n{name} = {top}.cli:main\n")
        (site / top).mkdir()
        (site / top / "__init__.py").write_text("")
    base = Base(layout=tmp_path, ref=None, manifest={}, manifest_digest="sha256:" + "0" * 64,
                config={}, python="/usr/bin/python3.11", python_version="3.11")
    deps, own, packages = _venv_layers(site, base)
    prefix = "opt/oemkit/venv/lib/python3.11/site-packages/"
    assert f"{prefix}tinydep/__init__.py" in deps.entries
    assert f"{prefix}tinydep/__init__.py" not in own.entries
    assert f"{prefix}oemkit/__init__.py" in own.entries
    assert "opt/oemkit/venv/bin/tinydep" in deps.entries
    assert own.entries["opt/oemkit/venv/bin/python"].target == "/usr/bin/python3.11"
    assert {p["name"] for p in packages} == {"oemkit", "tinydep"}


def _error(r) -> dict:
    return json.loads(r.stdout)["error"]


def test_a_bundle_that_does_not_verify_builds_nothing(signed_bundle, trust_file, base, wheel,
                                                      tmp_path):
    members = list(read_members(signed_bundle))
    sbom = bytearray(dict(members)["sbom.cdx.json"])
    sbom[100] ^= 1
    bad = write_members(tmp_path / "bad.oemb", replace_member(members, "sbom.cdx.json",
                                                              bytes(sbom)))
    out = tmp_path / "image"
    r = build(bad, base, trust_file, out, wheel)
    assert r.exit_code == 1 and _error(r)["code"] == "E_MEMBER_DIGEST", r.output
    assert not out.exists()


@pytest.mark.parametrize("case", ["missing", "empty-dir", "no-index", "bad-blob",
                                  "no-python"])
def test_a_base_that_is_not_an_oci_layout_is_refused(signed_bundle, trust_file, base, wheel,
                                                     tmp_path, case):
    bad = tmp_path / "base"
    if case == "empty-dir":
        bad.mkdir()
    elif case == "missing":
        pass  # neither a directory nor a registry reference
    else:
        shutil.copytree(base, bad)
    if case == "no-index":
        (bad / "index.json").write_text("[]")
    elif case == "bad-blob":
        manifest_digest = json.loads((bad / "index.json").read_text())["manifests"][0]["digest"]
        manifest = json.loads((bad / "blobs/sha256" / manifest_digest[7:]).read_text())
        layer = bad / "blobs/sha256" / manifest["layers"][0]["digest"][7:]
        data = bytearray(layer.read_bytes())
        data[-1] ^= 1
        layer.write_bytes(bytes(data))
    elif case == "no-python":
        pass  # the base is fine; --python names nothing usable
    out = tmp_path / "image"
    extra = ("--python", "/usr/bin/env") if case == "no-python" else ()
    r = build(signed_bundle, bad, trust_file, out, wheel, *extra)
    if case == "no-python":
        assert r.exit_code == 2 and _error(r)["code"] == "E_USAGE", r.output
    else:
        assert r.exit_code == 3 and _error(r)["code"] == "E_IMAGE_BASE_INVALID", r.output
        assert _error(r)["hint"]
    assert not out.exists()


def test_a_wheelhouse_without_the_dependencies_is_e_pip(signed_bundle, trust_file, base,
                                                        wheel, tmp_path):
    wheelhouse = tmp_path / "wheels"
    wheelhouse.mkdir()
    out = tmp_path / "image"
    r = build(signed_bundle, base, trust_file, out, wheel, "--wheelhouse", wheelhouse)
    assert r.exit_code == 4 and _error(r)["code"] == "E_PIP", r.output
    assert not out.exists()


def test_the_wheelhouse_install_takes_oemkits_oci_extra(tmp_path, monkeypatch):
    """With a wheelhouse, oemkit[oci] (the init container runs oemkit oci pull); --extra
    none installs oemkit alone; without a wheelhouse, oemkit without dependencies."""
    from oemkit.site import image

    calls: list[list[str]] = []
    monkeypatch.setattr(image, "_pip", lambda args, what: calls.append(args))
    wheel = tmp_path / "oemkit-0.1.0-py3-none-any.whl"
    image._install(wheel, tmp_path, "3.11", tmp_path / "t", ("oci",))
    image._install(wheel, tmp_path, "3.11", tmp_path / "t", ())
    image._install(wheel, None, "3.11", tmp_path / "t", ("oci",))
    assert [c[-1] for c in calls] == ["oemkit[oci]==0.1.0", "oemkit==0.1.0", "oemkit==0.1.0"]
    assert "--no-deps" in calls[2] and "--no-deps" not in calls[0]
    assert all({"--no-index", "--only-binary=:all:", "--python-version"} <= set(c)
               for c in calls)
    r = cli("image", tmp_path / "x.oemb", "--base", tmp_path, "--trust", tmp_path / "t.json",
            "--out", tmp_path / "o", "--extra", "Bad Name", "--json")
    assert r.exit_code == 2 and json.loads(r.stdout)["error"]["code"] == "E_USAGE"


@pytest.mark.enable_socket
@pytest.mark.allow_hosts(["127.0.0.1"])
def test_the_base_from_the_sites_registry(signed_bundle, trust_file, base, wheel, tmp_path,
                                          monkeypatch):
    """--base REF: the base image skopeo copied into a real registry (Debian's
    docker-registry on loopback) is fetched, its blobs checked, and gives the same layers
    and config as the layout it came from; the manifest names it as base.name."""
    from test_oci import REGISTRY_BIN, RegistryProcess

    if REGISTRY_BIN is None:
        pytest.skip("Debian's docker-registry is not installed (.ci/run installs it)")
    skopeo = need(SKOPEO, "skopeo")
    monkeypatch.setenv("HOME", str(tmp_path))  # no credentials of the user running the suite
    for name in ("REGISTRY_AUTH_FILE", "DOCKER_CONFIG", "XDG_RUNTIME_DIR", "XDG_CONFIG_HOME"):
        monkeypatch.delenv(name, raising=False)
    registry = RegistryProcess(tmp_path / "registry")
    try:
        ref = f"{registry.host}/library/python:{PY}"
        run(skopeo, "copy", "--dest-tls-verify=false", f"oci:{base}:py", f"docker://{ref}")
        from_layout = build(signed_bundle, base, trust_file, tmp_path / "a", wheel)
        r = cli("image", signed_bundle, "--base", ref, "--plain-http", "--trust", trust_file,
                "--out", tmp_path / "b", "--oemkit-wheel", wheel, "--json")
        assert from_layout.exit_code == 0 and r.exit_code == 0, r.output
        a, b = json.loads(from_layout.stdout), json.loads(r.stdout)
        assert a["base_digest"] == b["base_digest"]
        assert a["layers"] == b["layers"] and a["config_digest"] == b["config_digest"]
        manifest = json.loads((tmp_path / "b/blobs/sha256" /
                               b["manifest_digest"].removeprefix("sha256:")).read_text())
        assert manifest["annotations"]["org.opencontainers.image.base.name"] == ref

        r = cli("image", signed_bundle, "--base", f"{registry.host}/library/none:1",
                "--plain-http", "--trust", trust_file, "--out", tmp_path / "c", "--json")
        assert r.exit_code == 3 and json.loads(r.stdout)["error"]["code"] == "E_OCI_NOT_FOUND"
        r = cli("image", signed_bundle, "--base", ref, "--trust", trust_file,
                "--out", tmp_path / "c", "--json")  # TLS to a plain-HTTP registry
        assert r.exit_code == 4, r.output
        assert not (tmp_path / "c").exists()
    finally:
        registry.stop()
