"""``oemkit deploy kubernetes``: a Kustomize base that serves a verified bundle.

The base is a directory with ``kustomization.yaml`` and one YAML file per object, written
deterministically (sorted keys, no timestamps) and atomically (a temporary sibling renamed
into place: never half a base)::

    configmap-trust-root.yaml   the pinned trust root (what pods verify the bundle with)
    deployment.yaml             ``oemkit serve`` of the bundle, probes, resources, hardening
    hpa.yaml                    autoscaling/v2 on CPU, its target from the sizing headroom
    networkpolicy.yaml          ingress to the serving port only
    pdb.yaml                    at most the sizing's redundancy disrupted at once
    secret-license.yaml         the license (with --license)
    service.yaml                ClusterIP on the serving port

Where the pods get the bundle: with ``registry_ref`` an init container pulls it from the
site's registry (``oemkit oci pull REF@DIGEST --trust ... --out /bundle/NAME-VERSION.oemb``:
the reference pinned to the digest of this bundle's artifact, digests and signatures
verified before the file is written) into a shared ``emptyDir``; without
it the image carries it (``oemkit image`` puts it at :data:`IMAGE_BUNDLE_DIR`). Either way
``oemkit serve BUNDLE --trust`` verifies it again against the ConfigMap's root at start and
unpacks it into the pod's ``/tmp`` ``emptyDir`` (``oemkit serve`` serves a bundle file or an
install prefix; a bare payload carries no authenticated manifest to serve it by).

Sizing (``sizing.json`` of ``oemkit sizing``, its served recommendation): replicas =
``instances``, CPU request and limit = ``cores_per_instance``, memory request = 1.5 x the
served peak RSS (at least 64 Mi) and limit twice that (the sizing report's Kubernetes
snippet), ``--workers`` = ``workers_per_instance``, the HPA's CPU utilisation target =
``1 - headroom``. Without it, the documented defaults (:data:`DEFAULTS`).
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from oemkit import __version__
from oemkit.errors import EnvironmentProblem, InputError, UsageError

__all__ = ["DEFAULTS", "IMAGE_BUNDLE_DIR", "KubeOptions", "KubeResult", "SizingPlan",
           "base_objects", "load_sizing", "render", "staged_dir", "write_base"]

#: Where ``oemkit image`` puts oemkit's virtual environment and the bundle; the Deployment
#: runs ``VENV/bin/python -m oemkit`` (the serving short path) from any image laid out so.
IMAGE_VENV = "/opt/oemkit/venv"
IMAGE_BUNDLE_DIR = "/opt/oemkit/bundle"
#: Where the pods see the trust root (the ConfigMap; ``oemkit image`` puts the same root
#: there too, so the image also runs without Kubernetes), the license and the pulled bundle.
TRUST_DIR = "/etc/oemkit/trust"
TRUST_FILE = f"{TRUST_DIR}/trust-root.json"
LICENSE_DIR = "/etc/oemkit/licenses"
REGISTRY_AUTH_DIR = "/etc/oemkit/registry"
REGISTRY_CA_DIR = "/etc/oemkit/registry-ca"
PULL_DIR = "/bundle"
STATE_DIR = "/var/lib/oemkit"
#: The image's non-root user (the distroless "nonroot" uid and gid).
RUN_AS = 65532
#: Seconds the pod waits before SIGTERM (``preStop``) so that endpoints stop sending it new
#: connections first, and what the grace period allows beyond ``--drain`` and that wait.
PRE_STOP_S = 5
GRACE_MARGIN_S = 5


@dataclass(frozen=True)
class _Defaults:
    """What the base uses without ``--sizing`` (docs/FLEET.md says the same)."""

    replicas: int = 2
    cpu: int = 1
    memory_request_mi: int = 512
    memory_limit_mi: int = 1024
    workers: int = 1
    headroom: float = 0.3
    redundancy: int = 1


DEFAULTS = _Defaults()


@dataclass(frozen=True)
class SizingPlan:
    """The figures the objects are sized with, and where they came from."""

    replicas: int
    cpu: int
    memory_request_mi: int
    memory_limit_mi: int
    workers: int
    headroom: float
    redundancy: int
    profile: str | None = None
    source: str = "defaults"
    notes: tuple[str, ...] = ()

    @property
    def cpu_target_percent(self) -> int:
        """The HPA's average CPU utilisation target: the share of a replica's sustainable
        load the sizing left for use (``1 - headroom``), 10-95 %."""
        return min(95, max(10, round((1 - self.headroom) * 100)))

    def to_dict(self) -> dict[str, Any]:
        """The plan as JSON data (``--json``)."""
        return {"replicas": self.replicas, "cpu": self.cpu, "workers": self.workers,
                "memory_request_mi": self.memory_request_mi,
                "memory_limit_mi": self.memory_limit_mi, "headroom": self.headroom,
                "redundancy": self.redundancy, "profile": self.profile,
                "cpu_target_percent": self.cpu_target_percent, "source": self.source,
                "notes": list(self.notes)}


def _invalid(path: Path, what: str) -> InputError:
    return InputError("E_SIZING_INVALID", f"{path} is not a usable oemkit sizing.json: {what}",
                      hint="pass the sizing.json 'oemkit sizing BUNDLE --target-qps N' wrote "
                           "for this bundle, or leave --sizing out for the defaults")


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(
        value)


def _count(path: Path, rec: dict[str, Any], key: str, default: int | None) -> int:
    value = rec.get(key, default)
    if not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
        raise _invalid(path, f"recommendation.{key} is {value!r}, not a positive integer")
    return value


def load_sizing(path: Path, *, name: str, manifest_sha256: str | None) -> SizingPlan:
    """The sizing plan of ``path`` for the bundle ``name``.

    Raises:
        InputError: E_SIZING_INVALID (not a sizing.json, another bundle's, a recommendation
            that is not achievable or lacks its figures), E_NOT_FOUND, E_TOO_LARGE,
            E_JSON (:func:`oemkit._fs.read_input`, :func:`oemkit._canonical.parse_json`).
    """
    from oemkit._canonical import parse_json
    from oemkit._fs import read_input

    doc = parse_json(read_input(path, "sizing report"), what=str(path))
    if not isinstance(doc, dict) or not {"configurations", "recommendation"} <= set(doc):
        raise _invalid(path, "it has no configurations and recommendation")
    rec, request = doc["recommendation"], doc.get("request") or {}
    if not isinstance(rec, dict) or not isinstance(request, dict):
        raise _invalid(path, "its recommendation or request is not an object")
    if doc.get("name") != name:
        raise _invalid(path, f"it sizes {doc.get('name')!r}, not {name!r}")
    if not rec.get("achievable"):
        raise _invalid(path, "its recommendation is not achievable: "
                       f"{rec.get('reason') or 'no reason given'}")
    notes: list[str] = []
    if manifest_sha256 and doc.get("manifest_sha256") != manifest_sha256:
        notes.append(f"the sizing measured {doc.get('name')} {doc.get('version')} (manifest "
                     f"sha256:{str(doc.get('manifest_sha256'))[:12]}...), not this bundle: "
                     "its figures are used as they are")
    cores = _count(path, rec, "cores_per_instance", None)
    workers = _count(path, rec, "workers_per_instance", 1)
    memory = rec.get("memory_mb_per_instance")
    headroom = request.get("headroom", DEFAULTS.headroom)
    if not (_number(headroom) and 0 <= headroom < 1):
        raise _invalid(path, f"request.headroom is {headroom!r}, not a number in [0, 1)")
    redundancy = request.get("redundancy", DEFAULTS.redundancy)
    if not (isinstance(redundancy, int) and not isinstance(redundancy, bool)
            and redundancy >= 0):
        raise _invalid(path, f"request.redundancy is {redundancy!r}")
    instances = rec.get("instances")
    if instances is None:
        instances = DEFAULTS.replicas
        notes.append("the sizing had no --target-qps, so no instance count: "
                     f"{instances} replicas (the default)")
    elif not (isinstance(instances, int) and not isinstance(instances, bool)
              and instances >= 1):
        raise _invalid(path, f"recommendation.instances is {instances!r}")
    if memory is None:
        request_mi, limit_mi = DEFAULTS.memory_request_mi, DEFAULTS.memory_limit_mi
        notes.append("the sizing measured no peak RSS: the default memory request and limit")
    elif _number(memory) and memory > 0:
        # The sizing report's Kubernetes snippet (report.sizing.k8s_snippet): the same rule.
        request_mi = max(64, math.ceil(memory * 1.5))
        limit_mi = request_mi * 2
    else:
        raise _invalid(path, f"recommendation.memory_mb_per_instance is {memory!r}")
    profile = doc.get("profile")
    profile_name = profile.get("name") if isinstance(profile, dict) else None
    return SizingPlan(replicas=instances, cpu=cores, memory_request_mi=request_mi,
                      memory_limit_mi=limit_mi, workers=workers, headroom=float(headroom),
                      redundancy=redundancy,
                      profile=profile_name if isinstance(profile_name, str) else None,
                      source=str(path), notes=tuple(notes))


def default_plan() -> SizingPlan:
    """The plan without a sizing report (:data:`DEFAULTS`)."""
    d = DEFAULTS
    return SizingPlan(replicas=d.replicas, cpu=d.cpu, memory_request_mi=d.memory_request_mi,
                      memory_limit_mi=d.memory_limit_mi, workers=d.workers,
                      headroom=d.headroom, redundancy=d.redundancy,
                      notes=("no --sizing: the default replicas, resources and HPA target",))


# --------------------------------------------------------------------------- names

_DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_DNS_1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")


def object_name(bundle_name: str, explicit: str | None) -> str:
    """The objects' name: ``--name``, else the bundle's name made a DNS label (``.`` and
    ``_`` become ``-``). 50 characters at most, so every suffix keeps it under 63.

    Raises:
        UsageError: E_USAGE (``--name`` is not a DNS label, or none can be derived).
    """
    if explicit is not None:
        if not (_DNS_LABEL.match(explicit) and len(explicit) <= 50):
            raise UsageError("E_USAGE", f"--name {explicit!r} is not a DNS label of at most "
                             "50 characters", hint="lowercase letters, digits and '-', "
                             "starting with a letter, e.g. --name example")
        return explicit
    derived = re.sub(r"[^a-z0-9-]+", "-", bundle_name.lower()).strip("-")[:50].strip("-")
    if not _DNS_LABEL.match(derived):
        raise UsageError("E_USAGE", f"the bundle name {bundle_name!r} makes no Kubernetes "
                         "name", hint="pass --name NAME (a DNS label)")
    return derived


def _label_value(text: str) -> str:
    value = re.sub(r"[^A-Za-z0-9_.-]", "_", text)[:63].strip("_.-")
    return value if _LABEL_VALUE.match(value) else "unknown"


# --------------------------------------------------------------------------- objects


@dataclass(frozen=True)
class KubeOptions:
    """What ``oemkit deploy kubernetes`` was asked for besides the bundle and trust root."""

    image: str
    name: str | None = None
    namespace: str | None = None
    registry_ref: str | None = None
    registry_ca: Path | None = None
    license: Path | None = None
    sizing: Path | None = None
    port: int = 8000
    drain: int = 30
    max_replicas: int | None = None
    force: bool = False


@dataclass(frozen=True)
class _Facts:
    """What the verified bundle contributes to the objects."""

    name: str
    version: str
    manifest_sha256: str
    bundle_bytes: int
    payload_bytes: int
    trust_root: bytes
    license: bytes | None = None
    #: the registry reference pinned to the bundle artifact's digest, and the registry's CA
    pull_ref: str | None = None
    registry_ca: bytes | None = None


def _mi(n_bytes: int, margin_mi: int = 64) -> str:
    return f"{math.ceil(n_bytes / (1 << 20)) + margin_mi}Mi"


def _sha(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def base_objects(facts: _Facts, plan: SizingPlan, opts: KubeOptions,
                 name: str) -> dict[str, dict[str, Any]]:
    """The objects of the base by file name (a pure function of its inputs)."""
    import base64

    labels = {"app.kubernetes.io/name": name, "app.kubernetes.io/instance": name,
              "app.kubernetes.io/version": _label_value(facts.version),
              "app.kubernetes.io/component": "inference-server",
              "app.kubernetes.io/part-of": _label_value(facts.name),
              "app.kubernetes.io/managed-by": "oemkit"}
    selector = {"app.kubernetes.io/name": name, "app.kubernetes.io/instance": name}
    about = {"oemkit.dev/bundle": f"{facts.name} {facts.version}",
             "oemkit.dev/manifest-sha256": facts.manifest_sha256,
             "oemkit.dev/generated-by": f"oemkit {__version__} deploy kubernetes"}

    def meta(suffix: str = "") -> dict[str, Any]:
        return {"name": name + suffix, "labels": dict(labels), "annotations": dict(about)}

    replicas = plan.replicas
    max_replicas = opts.max_replicas or max(2 * replicas, replicas + 1)
    objects: dict[str, dict[str, Any]] = {}
    objects["configmap-trust-root.yaml"] = {
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": meta("-trust-root"),
        "data": {"trust-root.json": facts.trust_root.decode("utf-8")}}
    if facts.registry_ca is not None:
        objects["configmap-registry-ca.yaml"] = {
            "apiVersion": "v1", "kind": "ConfigMap", "metadata": meta("-registry-ca"),
            "data": {"ca.pem": facts.registry_ca.decode("utf-8")}}
    if facts.license is not None:
        objects["secret-license.yaml"] = {
            "apiVersion": "v1", "kind": "Secret", "type": "Opaque", "metadata": meta("-license"),
            "data": {f"{facts.name}.lic": base64.b64encode(facts.license).decode("ascii")}}
    objects["deployment.yaml"] = _deployment(facts, plan, opts, name, meta(), selector,
                                             labels)
    objects["service.yaml"] = {
        "apiVersion": "v1", "kind": "Service", "metadata": meta(),
        "spec": {"type": "ClusterIP", "selector": dict(selector),
                 "ports": [{"name": "http", "port": opts.port, "targetPort": "http",
                            "protocol": "TCP", "appProtocol": "http"}]}}
    unavailable = max(1, min(plan.redundancy, replicas - 1))
    objects["pdb.yaml"] = {
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": meta(),
        "spec": {"maxUnavailable": unavailable,
                 "selector": {"matchLabels": dict(selector)}}}
    objects["hpa.yaml"] = {
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": meta(),
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment",
                                    "name": name},
                 "minReplicas": replicas, "maxReplicas": max_replicas,
                 "metrics": [{"type": "Resource", "resource": {
                     "name": "cpu", "target": {"type": "Utilization",
                                               "averageUtilization": plan.cpu_target_percent}}}],
                 "behavior": {"scaleDown": {"stabilizationWindowSeconds": 300}}}}
    objects["networkpolicy.yaml"] = {
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": meta(),
        "spec": {"podSelector": {"matchLabels": dict(selector)}, "policyTypes": ["Ingress"],
                 "ingress": [{"ports": [{"port": opts.port, "protocol": "TCP"}]}]}}
    return objects


def _hardened() -> dict[str, Any]:
    return {"allowPrivilegeEscalation": False, "privileged": False,
            "readOnlyRootFilesystem": True, "runAsNonRoot": True, "runAsUser": RUN_AS,
            "runAsGroup": RUN_AS, "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"}}


def _deployment(facts: _Facts, plan: SizingPlan, opts: KubeOptions, name: str,
                metadata: dict[str, Any], selector: dict[str, str],
                labels: dict[str, str]) -> dict[str, Any]:
    file_name = f"{facts.name}-{facts.version}.oemb"
    bundle = (f"{PULL_DIR}/{file_name}" if facts.pull_ref else
              f"{IMAGE_BUNDLE_DIR}/{file_name}")
    python = [f"{IMAGE_VENV}/bin/python", "-m", "oemkit"]
    args = ["serve", bundle, "--trust", TRUST_FILE, "--host", "0.0.0.0",
            "--port", str(opts.port), "--drain", str(opts.drain),
            "--workers", str(plan.workers), "--state", f"{STATE_DIR}/license-state.json"]
    if plan.profile:
        args += ["--profile", plan.profile]
    if facts.license is not None:
        args += ["--license", f"{LICENSE_DIR}/{facts.name}.lic"]
    env = [{"name": "HOME", "value": "/tmp"}, {"name": "TMPDIR", "value": "/tmp"},
           {"name": "PYTHONDONTWRITEBYTECODE", "value": "1"},
           {"name": "PYTHONUNBUFFERED", "value": "1"}]
    mounts = [{"name": "tmp", "mountPath": "/tmp"},
              {"name": "state", "mountPath": STATE_DIR},
              {"name": "trust-root", "mountPath": TRUST_DIR, "readOnly": True}]
    volumes: list[dict[str, Any]] = [
        # serve unpacks the bundle here: disk-backed, so the payload is not counted as memory
        {"name": "tmp", "emptyDir": {"sizeLimit": _mi(facts.payload_bytes * 2)}},
        {"name": "state", "emptyDir": {"sizeLimit": "16Mi"}},
        {"name": "trust-root", "configMap": {"name": f"{name}-trust-root",
                                             "defaultMode": 0o444}}]
    if facts.license is not None:
        mounts.append({"name": "license", "mountPath": LICENSE_DIR, "readOnly": True})
        volumes.append({"name": "license", "secret": {"secretName": f"{name}-license",
                                                      "defaultMode": 0o440}})
    init: list[dict[str, Any]] = []
    if facts.pull_ref:
        pull_mounts = [{"name": "bundle", "mountPath": PULL_DIR},
                       {"name": "tmp", "mountPath": "/tmp"},
                       {"name": "trust-root", "mountPath": TRUST_DIR, "readOnly": True},
                       {"name": "registry-auth", "mountPath": REGISTRY_AUTH_DIR,
                        "readOnly": True}]
        pull_args = ["oci", "pull", facts.pull_ref, "--trust", TRUST_FILE,
                     "--out", f"{PULL_DIR}/{file_name}"]
        if facts.registry_ca is not None:
            pull_mounts.append({"name": "registry-ca", "mountPath": REGISTRY_CA_DIR,
                                "readOnly": True})
            pull_args += ["--ca-file", f"{REGISTRY_CA_DIR}/ca.pem"]
            volumes.append({"name": "registry-ca", "configMap": {
                "name": f"{name}-registry-ca", "defaultMode": 0o444}})
        mounts.append({"name": "bundle", "mountPath": PULL_DIR, "readOnly": True})
        volumes.append({"name": "bundle",
                        "emptyDir": {"sizeLimit": _mi(facts.bundle_bytes)}})
        # the registry's credentials, when the site keeps them in this (optional) Secret:
        # kubectl create secret docker-registry NAME-registry-auth ...
        volumes.append({"name": "registry-auth", "secret": {
            "secretName": f"{name}-registry-auth", "optional": True, "defaultMode": 0o440,
            "items": [{"key": ".dockerconfigjson", "path": "config.json"}]}})
        init.append({
            "name": "pull", "image": opts.image, "imagePullPolicy": "IfNotPresent",
            "command": python,
            "args": pull_args,
            "env": [*env, {"name": "DOCKER_CONFIG", "value": REGISTRY_AUTH_DIR},
                    {"name": "REGISTRY_AUTH_FILE",
                     "value": f"{REGISTRY_AUTH_DIR}/config.json"}],
            "resources": {"requests": {"cpu": "100m", "memory": "128Mi"},
                          "limits": {"cpu": str(plan.cpu), "memory": "512Mi"}},
            "securityContext": _hardened(),
            "volumeMounts": pull_mounts})
    probe = {"port": "http", "scheme": "HTTP"}
    container = {
        "name": "serve", "image": opts.image, "imagePullPolicy": "IfNotPresent",
        "command": python, "args": args, "env": env,
        "ports": [{"name": "http", "containerPort": opts.port, "protocol": "TCP"}],
        "resources": {"requests": {"cpu": str(plan.cpu),
                                   "memory": f"{plan.memory_request_mi}Mi"},
                      "limits": {"cpu": str(plan.cpu), "memory": f"{plan.memory_limit_mi}Mi"}},
        # verifying and unpacking a large bundle comes before the server listens
        "startupProbe": {"httpGet": {"path": "/v2/health/live", **probe},
                         "periodSeconds": 5, "failureThreshold": 120, "timeoutSeconds": 2},
        "readinessProbe": {"httpGet": {"path": "/v2/health/ready", **probe},
                           "periodSeconds": 5, "failureThreshold": 2, "timeoutSeconds": 2},
        "livenessProbe": {"httpGet": {"path": "/v2/health/live", **probe},
                          "periodSeconds": 10, "failureThreshold": 3, "timeoutSeconds": 2},
        # endpoints drop the pod before SIGTERM closes the socket (serve then drains)
        "lifecycle": {"preStop": {"exec": {"command": [
            f"{IMAGE_VENV}/bin/python", "-c", f"import time; time.sleep({PRE_STOP_S})"]}}},
        "securityContext": _hardened(),
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "volumeMounts": mounts,
    }
    pod_notes = {"oemkit.dev/manifest-sha256": facts.manifest_sha256,
                 "oemkit.dev/trust-root-sha256": _sha(facts.trust_root)}
    if facts.license is not None:
        pod_notes["oemkit.dev/license-sha256"] = _sha(facts.license)
    pod: dict[str, Any] = {
        "automountServiceAccountToken": False, "enableServiceLinks": False,
        "terminationGracePeriodSeconds": PRE_STOP_S + opts.drain + GRACE_MARGIN_S,
        "securityContext": {"runAsNonRoot": True, "runAsUser": RUN_AS, "runAsGroup": RUN_AS,
                            "fsGroup": RUN_AS, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [container], "volumes": volumes}
    if init:
        pod["initContainers"] = init
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": metadata,
        "spec": {"replicas": plan.replicas, "revisionHistoryLimit": 5,
                 "selector": {"matchLabels": dict(selector)},
                 "strategy": {"type": "RollingUpdate",
                              "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
                 "template": {"metadata": {"labels": dict(labels), "annotations": pod_notes},
                              "spec": pod}}}


def render(objects: dict[str, dict[str, Any]], namespace: str | None,
           header: str) -> dict[str, bytes]:
    """The base's files: each object as YAML (sorted keys) and ``kustomization.yaml``."""
    import yaml

    def dump(doc: dict[str, Any]) -> bytes:
        text = yaml.safe_dump(doc, sort_keys=True, default_flow_style=False,
                              allow_unicode=True, width=100)
        return (header + text).encode("utf-8")

    files = {name: dump(doc) for name, doc in sorted(objects.items())}
    kustomization: dict[str, Any] = {"apiVersion": "kustomize.config.k8s.io/v1beta1",
                                     "kind": "Kustomization", "resources": sorted(objects)}
    if namespace:
        kustomization["namespace"] = namespace
    files["kustomization.yaml"] = dump(kustomization)
    return files


# --------------------------------------------------------------------------- writing


@contextlib.contextmanager
def staged_dir(out: Path, *, force: bool = False) -> Iterator[Path]:
    """A temporary sibling of ``out`` to fill; renamed to ``out`` when the block ends
    without an exception, removed otherwise. ``out`` must be absent or empty unless
    ``force`` (then it is replaced whole, the old one removed only after the rename).

    Raises:
        InputError: E_DEST_NOT_DIR, E_DEST_NOT_EMPTY, E_DEST_SYMLINK.
        EnvironmentProblem: E_WRITE.
    """
    if out.is_symlink():
        raise InputError("E_DEST_SYMLINK", f"{out} is a symbolic link; oemkit does not write "
                         "through links", hint="pass the directory itself")
    if out.exists() and not out.is_dir():
        raise InputError("E_DEST_NOT_DIR", f"{out} exists and is not a directory",
                         hint="choose another --out")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise InputError("E_DEST_NOT_EMPTY", f"{out} is not empty",
                         hint="choose an empty --out, or pass --force to replace it")
    parent = out.absolute().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=parent))
    except OSError as exc:
        raise EnvironmentProblem("E_WRITE", f"cannot write in {parent}: {exc.strerror}",
                                 hint="choose a writable --out") from exc
    old: Path | None = None
    try:
        yield staging
        os.chmod(staging, 0o755 & ~_umask())
        if out.is_dir():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=parent))
            os.rename(out, old / "d")
        os.rename(staging, out)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        if old is not None and not out.exists():
            with contextlib.suppress(OSError):
                os.rename(old / "d", out)
        raise EnvironmentProblem("E_WRITE", f"cannot write {out}: {exc.strerror or exc}",
                                 hint="check free space and permissions; the destination "
                                      "was left as it was") from exc
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@dataclass
class KubeResult:
    """What ``write_base`` wrote."""

    dir: Path
    name: str
    bundle: str
    version: str
    manifest_sha256: str
    files: list[str]
    objects: list[dict[str, str]]
    plan: SizingPlan
    registry_ref: str | None
    max_replicas: int = 0
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The result as JSON data (``--json``)."""
        return {"ok": True, "dir": str(self.dir), "name": self.name, "bundle": self.bundle,
                "version": self.version, "manifest_sha256": self.manifest_sha256,
                "files": self.files, "objects": self.objects, "sizing": self.plan.to_dict(),
                "max_replicas": self.max_replicas,
                "registry_ref": self.registry_ref,
                "bundle_source": "registry" if self.registry_ref else "image",
                "notes": self.notes}


def _pinned_ref(text: str, bundle: Path) -> str:
    """``text`` pinned to the digest of the bundle's OCI artifact (``oemkit oci push``
    writes one manifest per bundle, deterministically): a tag moved to another release
    later does not change what the pods pull.

    Raises:
        UsageError: E_OCI_REF (not a registry reference).
        VerificationError: E_OCI_DIGEST (the reference names another digest).
    """
    from oemkit.errors import VerificationError
    from oemkit.site._registry import Reference
    from oemkit.site.oci import describe

    ref = Reference.parse(text)
    digest = describe(bundle).digest
    if ref.digest is not None and ref.digest != digest:
        raise VerificationError("E_OCI_DIGEST", f"--registry-ref names {ref.digest}, but this "
                                f"bundle's artifact is {digest}", expected=digest,
                                actual=ref.digest,
                                hint="pass the reference 'oemkit oci push' printed for this "
                                     "bundle, or one by tag only")
    base = f"{ref.host}/{ref.repository}" + (f":{ref.tag}" if ref.tag else "")
    return f"{base}@{digest}"


def _pem(data: bytes, path: Path) -> bytes:
    if b"-----BEGIN CERTIFICATE-----" not in data:
        raise InputError("E_TLS_INVALID", f"{path} holds no PEM certificate",
                         hint="pass the site registry's CA certificate (PEM)")
    try:
        data.decode("ascii")
    except UnicodeDecodeError:
        raise InputError("E_TLS_INVALID", f"{path} is not PEM text",
                         hint="pass the site registry's CA certificate (PEM)") from None
    return data


def write_base(bundle: Path, trust: Path, out: Path, opts: KubeOptions) -> KubeResult:
    """Verify ``bundle`` against ``trust``, then write the Kustomize base to ``out``.

    Nothing is written unless the bundle verifies and every input is good.

    Raises:
        VerificationError: the bundle's verification failure.
        InputError: E_SIZING_INVALID, E_TLS_INVALID (--registry-ca holds no PEM
            certificate), the input files' reading errors, and those of :func:`staged_dir`.
        UsageError: E_USAGE (a bad --name, --namespace, --image, --port, --drain or
            --max-replicas), E_OCI_REF.
        EnvironmentProblem: E_WRITE, E_PERMISSION.
    """
    from oemkit._fs import read_input
    from oemkit.verify.bundle import verify_bundle

    if not 1 <= opts.port <= 65535:
        raise UsageError("E_USAGE", f"--port {opts.port} is not a TCP port",
                         hint="1-65535, e.g. --port 8000")
    if opts.drain < 0:
        raise UsageError("E_USAGE", f"--drain {opts.drain} is negative", hint="e.g. --drain 30")
    if opts.namespace is not None and not (_DNS_1123.match(opts.namespace)
                                           and len(opts.namespace) <= 63):
        raise UsageError("E_USAGE", f"--namespace {opts.namespace!r} is not a DNS label",
                         hint="lowercase letters, digits and '-', e.g. --namespace ml")
    if not opts.image or any(c.isspace() for c in opts.image):
        raise UsageError("E_USAGE", f"--image {opts.image!r} is not an image reference",
                         hint="e.g. --image registry.site:5000/oemkit/example-server:0.2.0")
    trust_bytes = read_input(trust, "trust root")
    report = verify_bundle(bundle, trust_bytes)
    if not report.ok:
        assert report.error is not None
        raise report.error
    manifest = report.manifest
    name = object_name(manifest.name, opts.name)
    plan = (load_sizing(opts.sizing, name=manifest.name, manifest_sha256=report.manifest_sha256)
            if opts.sizing is not None else default_plan())
    if opts.max_replicas is not None and opts.max_replicas < plan.replicas:
        raise UsageError("E_USAGE", f"--max-replicas {opts.max_replicas} is below the "
                         f"{plan.replicas} replicas the base starts with",
                         hint=f"pass --max-replicas {plan.replicas} or more")
    license_bytes = (read_input(opts.license, "license", limit=1 << 20)
                     if opts.license is not None else None)
    if opts.registry_ca is not None and not opts.registry_ref:
        raise UsageError("E_USAGE", "--registry-ca is for the init container that pulls "
                         "--registry-ref", hint="give --registry-ref too, or leave it out")
    ca = (_pem(read_input(opts.registry_ca, "registry CA", limit=1 << 20), opts.registry_ca)
          if opts.registry_ca is not None else None)
    pull_ref = _pinned_ref(opts.registry_ref, bundle) if opts.registry_ref else None
    facts = _Facts(name=manifest.name, version=manifest.version,
                   manifest_sha256=str(report.manifest_sha256),
                   bundle_bytes=bundle.stat().st_size, payload_bytes=report.payload_bytes,
                   trust_root=trust_bytes, license=license_bytes, pull_ref=pull_ref,
                   registry_ca=ca)
    objects = base_objects(facts, plan, opts, name)
    header = (f"# oemkit deploy kubernetes: {facts.name} {facts.version} (manifest sha256:"
              f"{facts.manifest_sha256}); generated by oemkit {__version__}, edit through a "
              "kustomize overlay\n")
    files = render(objects, opts.namespace, header)
    with staged_dir(out, force=opts.force) as staging:
        for file_name, data in files.items():
            path = staging / file_name
            with open(path, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(path, 0o644)
    notes = list(plan.notes)
    if not opts.registry_ref:
        notes.append(f"no --registry-ref: the pods serve the bundle the image carries "
                     f"({IMAGE_BUNDLE_DIR}/{facts.name}-{facts.version}.oemb, as 'oemkit "
                     "image' lays it out)")
    return KubeResult(
        dir=out, name=name, bundle=facts.name, version=facts.version,
        manifest_sha256=facts.manifest_sha256, files=sorted(files),
        objects=[{"file": f, "kind": o["kind"], "name": o["metadata"]["name"]}
                 for f, o in sorted(objects.items())],
        plan=plan, registry_ref=pull_ref, notes=notes,
        max_replicas=objects["hpa.yaml"]["spec"]["maxReplicas"])
