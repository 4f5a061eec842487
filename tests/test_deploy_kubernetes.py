"""`oemkit deploy kubernetes`: the Kustomize base, rendered by kubectl and validated against
the Kubernetes schemas (kubernetes-validate) of the two newest releases it ships."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from helpers import read_members, replace_member, write_members
from oemkit.cli import app
from oemkit.measure.sizing import Slo, recommend_served
from oemkit.site.oci import describe

runner = CliRunner()
IMAGE = "registry.site:5000/oemkit/example:0.2.0"
REF = "registry.site:5000/oemkit/bundles/example:0.2.0"
#: .ci/run installs kubectl (Debian's kubernetes-client) where it is missing.
KUBECTL = shutil.which("kubectl")


def cli(*args):
    result = runner.invoke(app, [str(a) for a in args])
    assert "Traceback" not in result.output, result.output
    return result


def _served_sizing(path: Path, name: str = "example", achievable: bool = True) -> Path:
    """A sizing.json of the shape `oemkit sizing` writes, its recommendation from the
    served figures through the sizing's own function."""
    served = {"workers": 2, "threads_per_worker": 1, "memory_mb": 180.2,
              "levels": [{"rate": 50.0, "meets_slo": achievable,
                          "oemkit": {"latency_ms": {"p95": 5.0}}}],
              "closed_loop": [{"concurrency": 1, "latency_ms": {"p95": 4.0}}]}
    rec = recommend_served(served, Slo("p95", 20.0), 100.0, 0.25, 1)
    doc = {"name": name, "version": "0.2.0", "manifest_sha256": "0" * 64, "complete": True,
           "profile": {"name": "cpu-small"}, "configurations": [], "server": [],
           "served": served, "notes": [],
           "request": {"target_qps": 100.0, "headroom": 0.25, "redundancy": 1},
           "recommendation": rec}
    path.write_text(json.dumps(doc))
    return path


@pytest.fixture
def sizing(tmp_path) -> Path:
    return _served_sizing(tmp_path / "sizing.json")


def _objects(out: Path) -> dict[str, dict]:
    return {p.name: yaml.safe_load(p.read_text()) for p in sorted(out.glob("*.yaml"))}


def _render(out: Path) -> list[dict]:
    if KUBECTL is None:  # .ci/run installs kubectl; without it the files are read directly
        pytest.skip("kubectl is not installed (.ci/run installs Debian's kubernetes-client)")
    done = subprocess.run([KUBECTL, "kustomize", str(out)], capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0, done.stderr
    return [d for d in yaml.safe_load_all(done.stdout) if d]


def _validate(objects: list[dict]) -> list[str]:
    import kubernetes_validate
    from kubernetes_validate import utils

    versions = sorted(set(utils.all_versions()),
                      key=lambda v: tuple(int(x) for x in v.split(".")))[-2:]
    assert len(versions) == 2
    for version in versions:
        for doc in objects:
            kubernetes_validate.validate(doc, version, strict=True)
    return versions


def test_base_with_sizing_registry_and_license(signed_bundle, trust_file, sizing, tmp_path):
    out = tmp_path / "k8s"
    lic = tmp_path / "site.lic"
    lic.write_bytes(b"-----BEGIN OEMKIT LICENSE-----\nnot checked here\n")
    r = cli("deploy", "kubernetes", signed_bundle, "--trust", trust_file, "--image", IMAGE,
            "--sizing", sizing, "--registry-ref", REF, "--license", lic, "--namespace", "ml",
            "--drain", "20", "--out", out, "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["ok"] and doc["bundle_source"] == "registry"
    assert sorted(p.name for p in out.iterdir()) == sorted(doc["files"]) == [
        "configmap-trust-root.yaml", "deployment.yaml", "hpa.yaml", "kustomization.yaml",
        "networkpolicy.yaml", "pdb.yaml", "secret-license.yaml", "service.yaml"]
    rendered = _render(out)
    versions = _validate(rendered)
    assert versions[-1] >= "1.3"
    by_kind = {d["kind"]: d for d in rendered}
    assert set(by_kind) == {"ConfigMap", "Secret", "Deployment", "Service",
                            "PodDisruptionBudget", "HorizontalPodAutoscaler", "NetworkPolicy"}
    assert {d["metadata"]["namespace"] for d in rendered} == {"ml"}

    # sizing: 4 = ceil(100 / (50 x 0.75)) + 1 instances, 2 cores, 1.5 x 181 MB
    dep = by_kind["Deployment"]
    assert dep["metadata"]["labels"]["app.kubernetes.io/version"] == "0.2.0"
    assert dep["spec"]["replicas"] == 4
    pod = dep["spec"]["template"]["spec"]
    serve = pod["containers"][0]
    assert serve["resources"] == {"requests": {"cpu": "2", "memory": "272Mi"},
                                  "limits": {"cpu": "2", "memory": "544Mi"}}
    args = serve["args"]
    assert args[:2] == ["serve", "/bundle/example-0.2.0.oemb"]
    assert args[args.index("--workers") + 1] == "2"
    assert args[args.index("--drain") + 1] == "20"
    assert args[args.index("--profile") + 1] == "cpu-small"
    assert args[args.index("--license") + 1] == "/etc/oemkit/licenses/example.lic"
    assert args[args.index("--trust") + 1] == "/etc/oemkit/trust/trust-root.json"
    assert serve["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": "http",
                                                  "scheme": "HTTP"}
    assert serve["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert serve["ports"] == [{"name": "http", "containerPort": 8000, "protocol": "TCP"}]
    assert pod["terminationGracePeriodSeconds"] == 5 + 20 + 5  # preStop + drain + margin
    for c in [serve, *pod["initContainers"]]:
        sc = c["securityContext"]
        assert sc["runAsNonRoot"] and sc["readOnlyRootFilesystem"]
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"] == {"drop": ["ALL"]}
        assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
        assert {"name": "tmp", "mountPath": "/tmp"} in c["volumeMounts"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["automountServiceAccountToken"] is False
    (init,) = pod["initContainers"]
    pinned = f"{REF}@{describe(signed_bundle).digest}"  # what oemkit oci push makes of it
    assert doc["registry_ref"] == pinned
    assert init["args"] == ["oci", "pull", pinned, "--trust",
                            "/etc/oemkit/trust/trust-root.json",
                            "--out", "/bundle/example-0.2.0.oemb"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes["bundle"] and "emptyDir" in volumes["tmp"]
    assert volumes["trust-root"]["configMap"]["name"] == "example-trust-root"
    assert volumes["license"]["secret"]["secretName"] == "example-license"

    assert by_kind["ConfigMap"]["data"]["trust-root.json"] == trust_file.read_text()
    assert base64.b64decode(by_kind["Secret"]["data"]["example.lic"]) == lic.read_bytes()
    hpa = by_kind["HorizontalPodAutoscaler"]["spec"]
    assert hpa["minReplicas"] == 4 and hpa["maxReplicas"] == 8
    assert hpa["metrics"][0]["resource"] == {
        "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 75}}
    assert by_kind["PodDisruptionBudget"]["spec"]["maxUnavailable"] == 1
    netpol = by_kind["NetworkPolicy"]["spec"]
    assert netpol["policyTypes"] == ["Ingress"]
    assert netpol["ingress"] == [{"ports": [{"port": 8000, "protocol": "TCP"}]}]
    assert netpol["podSelector"]["matchLabels"] == \
        by_kind["Service"]["spec"]["selector"] == dep["spec"]["selector"]["matchLabels"]
    assert by_kind["Service"]["spec"]["ports"][0]["targetPort"] == "http"


def test_defaults_serve_the_bundle_the_image_carries(signed_bundle, trust_file, tmp_path):
    out = tmp_path / "k8s"
    r = cli("deploy", "kubernetes", signed_bundle, "--trust", trust_file, "--image", IMAGE,
            "--out", out, "--port", "9000", "--name", "scorer")
    assert r.exit_code == 0, r.output
    rendered = _render(out)
    _validate(rendered)
    objects = _objects(out)
    assert "secret-license.yaml" not in objects
    dep = objects["deployment.yaml"]
    assert dep["metadata"]["name"] == "scorer" and dep["spec"]["replicas"] == 2
    pod = dep["spec"]["template"]["spec"]
    assert "initContainers" not in pod
    serve = pod["containers"][0]
    assert serve["args"][1] == "/opt/oemkit/bundle/example-0.2.0.oemb"
    assert serve["resources"]["requests"] == {"cpu": "1", "memory": "512Mi"}
    assert serve["args"][serve["args"].index("--workers") + 1] == "1"
    assert pod["terminationGracePeriodSeconds"] == 40
    assert objects["hpa.yaml"]["spec"]["metrics"][0]["resource"]["target"][
        "averageUtilization"] == 70
    assert objects["networkpolicy.yaml"]["spec"]["ingress"][0]["ports"][0]["port"] == 9000
    assert objects["service.yaml"]["spec"]["ports"][0]["port"] == 9000


def test_the_base_is_deterministic_and_force_replaces_it(signed_bundle, trust_file, sizing,
                                                         tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for out in (a, b):
        assert cli("deploy", "kubernetes", signed_bundle, "--trust", trust_file, "--image",
                   IMAGE, "--sizing", sizing, "--out", out).exit_code == 0
    assert {p.name: p.read_bytes() for p in a.iterdir()} == \
        {p.name: p.read_bytes() for p in b.iterdir()}
    text = (a / "deployment.yaml").read_text()
    assert text.startswith("# oemkit deploy kubernetes: example 0.2.0")
    assert yaml.safe_dump(yaml.safe_load(text), sort_keys=True) in text  # sorted keys

    r = cli("deploy", "kubernetes", signed_bundle, "--trust", trust_file, "--image", IMAGE,
            "--out", a, "--json")
    assert r.exit_code == 3 and json.loads(r.stdout)["error"]["code"] == "E_DEST_NOT_EMPTY"
    r = cli("deploy", "kubernetes", signed_bundle, "--trust", trust_file, "--image", IMAGE,
            "--out", a, "--force")
    assert r.exit_code == 0, r.output
    assert _objects(a)["deployment.yaml"]["spec"]["replicas"] == 2  # the defaults now
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def _error(r) -> dict:
    return json.loads(r.stdout)["error"]


def tampered(bundle: Path, tmp_path: Path) -> Path:
    """A copy of ``bundle`` whose SBOM has one bit flipped (E_MEMBER_DIGEST)."""
    members = dict(read_members(bundle))
    sbom = bytearray(members["sbom.cdx.json"])
    sbom[100] ^= 1
    return write_members(tmp_path / "bad.oemb", replace_member(
        list(read_members(bundle)), "sbom.cdx.json", bytes(sbom)))


def test_a_bundle_that_does_not_verify_writes_nothing(signed_bundle, trust_file, tmp_path):
    bad = tampered(signed_bundle, tmp_path)
    out = tmp_path / "k8s"
    r = cli("deploy", "kubernetes", bad, "--trust", trust_file, "--image", IMAGE,
            "--out", out, "--json")
    assert r.exit_code == 1, r.output
    assert _error(r)["code"] == "E_MEMBER_DIGEST"
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".k8s")]


@pytest.mark.parametrize("case", ["not-json", "not-sizing", "other-bundle", "unachievable",
                                  "bad-cores"])
def test_a_sizing_that_is_not_one_is_refused(signed_bundle, trust_file, tmp_path, case):
    path = tmp_path / "sizing.json"
    if case == "not-json":
        path.write_text("{")
    elif case == "not-sizing":
        path.write_text(json.dumps({"name": "example", "passed": True}))
    elif case == "other-bundle":
        _served_sizing(path, name="another")
    elif case == "unachievable":
        _served_sizing(path, achievable=False)
    else:
        _served_sizing(path)
        doc = json.loads(path.read_text())
        doc["recommendation"]["cores_per_instance"] = "two"
        path.write_text(json.dumps(doc))
    out = tmp_path / "k8s"
    r = cli("deploy", "kubernetes", signed_bundle, "--trust", trust_file, "--image", IMAGE,
            "--sizing", path, "--out", out, "--json")
    assert r.exit_code == 3, r.output
    assert _error(r)["code"] == ("E_JSON" if case == "not-json" else "E_SIZING_INVALID")
    assert _error(r)["hint"]
    assert not out.exists()


def test_bad_names_and_options_are_usage_errors(signed_bundle, trust_file, tmp_path):
    out = tmp_path / "k8s"
    r = cli("deploy", "kubernetes", signed_bundle, "--trust", trust_file, "--image", IMAGE,
            "--out", out, "--name", "Bad_Name", "--json")
    assert r.exit_code == 2 and _error(r)["code"] == "E_USAGE"
    r = cli("deploy", "kubernetes", signed_bundle, "--trust", trust_file, "--image", IMAGE,
            "--out", out, "--max-replicas", "1", "--json")
    assert r.exit_code == 2 and "--max-replicas" in _error(r)["message"]
    r = cli("deploy", "kubernetes", signed_bundle, "--trust", trust_file, "--image", IMAGE,
            "--out", out, "--namespace", "ML_prod", "--json")
    assert r.exit_code == 2 and "--namespace" in _error(r)["message"]
    r = cli("deploy", "kubernetes", signed_bundle, "--trust", trust_file, "--image",
            "reg/x:1 --privileged", "--out", out, "--json")
    assert r.exit_code == 2 and "--image" in _error(r)["message"]
    assert not out.exists()


def test_the_sizing_rule_is_the_sizing_reports(sizing):
    """The base's replicas and resources are what the sizing report's snippet says."""
    from oemkit.report.sizing import k8s_snippet
    from oemkit.site.kubernetes import load_sizing

    plan = load_sizing(sizing, name="example", manifest_sha256="1" * 64)
    snippet = yaml.safe_load(k8s_snippet(json.loads(sizing.read_text())))
    assert snippet["replicas"] == plan.replicas
    assert snippet["resources"]["requests"] == {"cpu": str(plan.cpu),
                                                "memory": f"{plan.memory_request_mi}Mi"}
    assert snippet["resources"]["limits"]["memory"] == f"{plan.memory_limit_mi}Mi"
    assert plan.notes  # the fixture's manifest digest is not this bundle's: said so


@pytest.mark.enable_socket
@pytest.mark.allow_hosts(["127.0.0.1"])
def test_the_pods_command_line_serves_and_drains(signed_bundle, trust_file, sizing, tmp_path):
    """The serving container's command and arguments, with the pod's paths mapped to this
    host's (and a free loopback port), start oemkit serve; it gets ready and drains."""
    import http.client
    import os
    import signal
    import sys
    import time

    out = tmp_path / "k8s"
    assert cli("deploy", "kubernetes", signed_bundle, "--trust", trust_file, "--image", IMAGE,
               "--sizing", sizing, "--out", out).exit_code == 0
    container = _objects(out)["deployment.yaml"]["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["/opt/oemkit/venv/bin/python", "-m", "oemkit"]
    where = {"/opt/oemkit/bundle/example-0.2.0.oemb": str(signed_bundle),
             "/etc/oemkit/trust/trust-root.json": str(trust_file),
             "/var/lib/oemkit/license-state.json": str(tmp_path / "state.json"),
             "0.0.0.0": "127.0.0.1", "8000": "0"}
    args = [where.get(a, a) for a in container["args"]]
    port_file = tmp_path / "port"
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "oemkit", *args, "--port-file", port_file],
                            stdout=subprocess.DEVNULL, stderr=log,
                            env={**os.environ, "TMPDIR": str(tmp_path)})
    try:
        deadline = time.monotonic() + 120
        status = 0
        while status != 200:
            assert proc.poll() is None and time.monotonic() < deadline, \
                (tmp_path / "serve.log").read_text()
            time.sleep(0.1)
            if not port_file.exists():
                continue
            try:
                conn = http.client.HTTPConnection("127.0.0.1", int(port_file.read_text()),
                                                  timeout=10)
                conn.request("GET", container["readinessProbe"]["httpGet"]["path"])
                status = conn.getresponse().status
            except OSError:
                status = 0
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
    lines = [json.loads(line) for line in (tmp_path / "serve.log").read_text().splitlines()
             if line.startswith("{")]
    listening = next(line for line in lines if line.get("msg") == "listening")
    assert listening["workers"] == 2  # the sizing's workers per instance
    assert any(line.get("msg") == "stopped" for line in lines)


def test_the_registry_reference_is_pinned_and_its_ca_mounted(signed_bundle, trust_file,
                                                             tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    digest = describe(signed_bundle).digest
    out = tmp_path / "k8s"
    r = cli("deploy", "kubernetes", signed_bundle, "--trust", trust_file, "--image", IMAGE,
            "--registry-ref", f"{REF}@{digest}", "--registry-ca", ca, "--out", out)
    assert r.exit_code == 0, r.output
    _validate(_render(out))
    objects = _objects(out)
    assert objects["configmap-registry-ca.yaml"]["data"]["ca.pem"] == ca.read_text()
    (init,) = objects["deployment.yaml"]["spec"]["template"]["spec"]["initContainers"]
    assert init["args"][2] == f"{REF}@{digest}"
    assert init["args"][-2:] == ["--ca-file", "/etc/oemkit/registry-ca/ca.pem"]
    assert {"name": "registry-ca", "mountPath": "/etc/oemkit/registry-ca",
            "readOnly": True} in init["volumeMounts"]

    other = tmp_path / "other"
    r = cli("deploy", "kubernetes", signed_bundle, "--trust", trust_file, "--image", IMAGE,
            "--registry-ref", f"{REF}@sha256:{'0' * 64}", "--out", other, "--json")
    assert r.exit_code == 1 and _error(r)["code"] == "E_OCI_DIGEST"
    r = cli("deploy", "kubernetes", signed_bundle, "--trust", trust_file, "--image", IMAGE,
            "--registry-ref", "example:0.2.0", "--out", other, "--json")
    assert r.exit_code == 2 and _error(r)["code"] == "E_OCI_REF"
    r = cli("deploy", "kubernetes", signed_bundle, "--trust", trust_file, "--image", IMAGE,
            "--registry-ref", REF, "--registry-ca", trust_file, "--out", other, "--json")
    assert r.exit_code == 3 and _error(r)["code"] == "E_TLS_INVALID"
    r = cli("deploy", "kubernetes", signed_bundle, "--trust", trust_file, "--image", IMAGE,
            "--registry-ca", ca, "--out", other, "--json")
    assert r.exit_code == 2 and _error(r)["code"] == "E_USAGE"
    assert not other.exists()


@pytest.mark.enable_socket
@pytest.mark.allow_hosts(["127.0.0.1"])
def test_the_init_containers_pull_gets_the_pushed_bundle(signed_bundle, trust_file, tmp_path):
    """`oemkit oci push` to a real registry (Debian's docker-registry on loopback), then the
    init container's command line, its pod paths mapped to this host's: the pinned
    reference pulls exactly this bundle."""
    import os
    import sys

    from test_oci import REGISTRY_BIN, RegistryProcess

    if REGISTRY_BIN is None:
        pytest.skip("Debian's docker-registry is not installed (.ci/run installs it)")
    registry = RegistryProcess(tmp_path / "registry")
    try:
        ref = f"{registry.host}/oemkit/example:0.2.0"
        assert cli("oci", "push", signed_bundle, ref, "--plain-http").exit_code == 0
        out = tmp_path / "k8s"
        assert cli("deploy", "kubernetes", signed_bundle, "--trust", trust_file, "--image",
                   IMAGE, "--registry-ref", ref, "--out", out).exit_code == 0
        pod = _objects(out)["deployment.yaml"]["spec"]["template"]["spec"]
        (init,) = pod["initContainers"]
        pulled = tmp_path / "bundle" / "example-0.2.0.oemb"
        pulled.parent.mkdir()
        where = {"/bundle/example-0.2.0.oemb": str(pulled),
                 "/etc/oemkit/trust/trust-root.json": str(trust_file)}
        args = [where.get(a, a) for a in init["args"]]
        env = {**os.environ, **{e["name"]: e["value"] for e in init["env"]},
               "HOME": str(tmp_path), "TMPDIR": str(tmp_path),
               "DOCKER_CONFIG": str(tmp_path / "auth"),
               "REGISTRY_AUTH_FILE": str(tmp_path / "auth" / "config.json")}
        done = subprocess.run([sys.executable, "-m", "oemkit", *args, "--plain-http"],
                              capture_output=True, text=True, env=env, check=False)
        assert done.returncode == 0, done.stderr
        assert pulled.read_bytes() == signed_bundle.read_bytes()
        # the serving container serves what the init container left in the shared volume
        assert pod["containers"][0]["args"][1] == init["args"][-1]
    finally:
        registry.stop()
