"""Hardware profiles (YAML, validated by schemas/profile.schema.json) and host detection.

A profile names what a target host has (cores, memory, accelerator), the onnxruntime
execution providers to use in preference order, thread settings, and the budgets a smoke
test judges against. Shipped profiles live in ``oemkit/profiles``; a bundle may carry its
own (``profiles/NAME.yaml`` in its payload), and any YAML file path works too.
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from oemkit._canonical import sha256_hex
from oemkit._fs import read_input
from oemkit.errors import InputError
from oemkit.schema import load_yaml, validate

#: Profiles are small YAML files; anything larger is refused before it is read whole.
MAX_PROFILE = 1 << 20


@dataclass(frozen=True)
class Provider:
    name: str
    options: dict[str, Any] = field(default_factory=dict)
    require: bool = False


@dataclass(frozen=True)
class Profile:
    """A validated hardware profile."""

    name: str
    description: str
    accelerator: str
    providers: tuple[Provider, ...]
    budgets: dict[str, float]
    min_cores: int = 1
    arch: tuple[str, ...] = ()
    cpu_flags: tuple[str, ...] = ()
    memory_mb: int = 0
    intra_op: int = 0
    inter_op: int = 0
    iterations: int = 200
    warmup: int = 10
    max_seconds: float = 10.0
    timeout_s: float = 120.0
    source: str = ""
    sha256: str = ""

    @property
    def batch(self) -> int:
        return int(self.budgets.get("batch", 1))

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "description": self.description,
            "accelerator": self.accelerator,
            "providers": [{"name": p.name, "options": p.options, "require": p.require}
                          for p in self.providers],
            "budgets": self.budgets, "min_cores": self.min_cores, "arch": list(self.arch),
            "cpu_flags": list(self.cpu_flags), "memory_mb": self.memory_mb,
            "threads": {"intra_op": self.intra_op, "inter_op": self.inter_op},
            "steady_state": {"iterations": self.iterations, "warmup": self.warmup,
                             "max_seconds": self.max_seconds},
            "timeout_s": self.timeout_s, "source": self.source, "sha256": self.sha256,
        }


def _from_yaml(data: bytes, source: str) -> Profile:
    raw, lines = load_yaml(data, Path(source).name)
    validate(raw, "profile.schema.json", Path(source).name, lines, code="E_PROFILE_INVALID")
    cpu = raw.get("cpu", {})
    threads = raw.get("threads", {})
    steady = raw.get("steady_state", {})
    return Profile(
        name=raw["name"], description=raw.get("description", ""),
        accelerator=raw["accelerator"],
        providers=tuple(Provider(p["name"], dict(p.get("options", {})),
                                 bool(p.get("require", False))) for p in raw["providers"]),
        budgets={k: v for k, v in raw["budgets"].items()},
        min_cores=cpu.get("min_cores", 1), arch=tuple(cpu.get("arch", ())),
        cpu_flags=tuple(cpu.get("flags", ())), memory_mb=raw.get("memory_mb", 0),
        intra_op=threads.get("intra_op", 0), inter_op=threads.get("inter_op", 0),
        iterations=steady.get("iterations", 200), warmup=steady.get("warmup", 10),
        max_seconds=float(steady.get("max_seconds", 10.0)),
        timeout_s=float(raw.get("timeout_s", 120.0)), source=source, sha256=sha256_hex(data))


def shipped_profiles() -> dict[str, bytes]:
    """Name -> YAML bytes of the profiles that ship with oemkit."""
    folder = resources.files("oemkit").joinpath("profiles")
    return {entry.name[:-5]: entry.read_bytes() for entry in folder.iterdir()
            if entry.name.endswith(".yaml")}


def load_profile(name: str, bundle_dir: Path | None = None) -> Profile:
    """A profile by path, by name from the bundle's ``profiles/``, or a shipped one."""
    candidate = Path(name)
    if name.endswith((".yaml", ".yml")) or os.sep in name:
        if not candidate.is_file():
            raise InputError("E_PROFILE_NOT_FOUND", f"profile file {name} does not exist",
                             hint="pass a shipped profile name or an existing YAML file")
        return _from_yaml(read_input(candidate, "profile", MAX_PROFILE), str(candidate))
    if bundle_dir is not None:
        carried = bundle_dir / "profiles" / f"{name}.yaml"
        if carried.is_file():
            return _from_yaml(read_input(carried, "profile", MAX_PROFILE),
                              f"bundle:profiles/{name}.yaml")
    shipped = shipped_profiles()
    if name not in shipped:
        import difflib

        close = difflib.get_close_matches(name, list(shipped), n=1)
        raise InputError("E_PROFILE_NOT_FOUND", f"no profile named {name!r}"
                         + (f" (did you mean {close[0]!r}?)" if close else ""),
                         hint=f"shipped profiles: {', '.join(sorted(shipped))}; or pass a "
                              "YAML file")
    return _from_yaml(shipped[name], f"oemkit:profiles/{name}.yaml")


# --------------------------------------------------------------------------- host


@dataclass(frozen=True)
class HostInfo:
    """What this host has, as far as oemkit can tell offline."""

    arch: str
    cores: int
    memory_mb: int
    cpu_model: str
    cpu_flags: tuple[str, ...]
    providers: tuple[str, ...]
    gpus: tuple[str, ...]
    onnxruntime: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"arch": self.arch, "cores": self.cores, "memory_mb": self.memory_mb,
                "cpu_model": self.cpu_model, "cpu_flags": list(self.cpu_flags),
                "providers": list(self.providers), "gpus": list(self.gpus),
                "onnxruntime": self.onnxruntime}


def detect_host() -> HostInfo:
    """Cores, memory, CPU flags, onnxruntime providers and visible GPUs of this host."""
    import psutil

    model = ""
    flags: tuple[str, ...] = ()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                key = key.strip()
                if key in ("model name", "Model", "cpu model") and not model:
                    model = value.strip()
                elif key in ("flags", "Features") and not flags:
                    flags = tuple(sorted(value.split()))
    except OSError:
        pass
    try:
        import onnxruntime

        providers = tuple(onnxruntime.get_available_providers())
        version: str | None = onnxruntime.__version__
    except ImportError:
        providers, version = (), None
    gpus: list[str] = []
    nvidia = Path("/proc/driver/nvidia/gpus")
    if nvidia.is_dir():
        for gpu in sorted(nvidia.iterdir()):
            info = gpu / "information"
            try:
                text = info.read_text()
            except OSError:
                continue
            for line in text.splitlines():
                if line.startswith("Model:"):
                    gpus.append(line.split(":", 1)[1].strip())
    return HostInfo(arch=platform.machine(), cores=os.cpu_count() or 1,
                    memory_mb=int(psutil.virtual_memory().total / 2**20),
                    cpu_model=model or platform.processor(), cpu_flags=flags,
                    providers=providers, gpus=tuple(gpus), onnxruntime=version)


def unmet(profile: Profile, host: HostInfo) -> list[str]:
    """Why ``host`` does not satisfy ``profile`` (empty when it does)."""
    reasons = []
    arch = {"arm64": "aarch64"}.get(host.arch, host.arch)
    if profile.arch and arch not in {{"arm64": "aarch64"}.get(a, a) for a in profile.arch}:
        reasons.append(f"CPU architecture {host.arch} is not one of {', '.join(profile.arch)}")
    if host.cores < profile.min_cores:
        reasons.append(f"{host.cores} CPU cores, the profile needs {profile.min_cores}")
    if profile.memory_mb and host.memory_mb < profile.memory_mb:
        reasons.append(f"{host.memory_mb} MB memory, the profile needs {profile.memory_mb}")
    missing_flags = [f for f in profile.cpu_flags if f not in host.cpu_flags]
    if missing_flags:
        reasons.append(f"CPU lacks {', '.join(missing_flags)}")
    for provider in profile.providers:
        if provider.require and provider.name not in host.providers:
            reasons.append(f"required provider {provider.name} is not available")
    return reasons
