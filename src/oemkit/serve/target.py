"""What ``oemkit serve TARGET`` serves: an install prefix's current slot, or a bundle file
verified and unpacked to a temporary folder first.

A prefix's slot holds what install verified (``bundle/`` the payload, ``manifest.json``
the authenticated manifest, ``config.json`` the live, migrated config, ``trust-root.json``
the root it verified against, ``revocations.crl`` the carried CRL); licenses are looked
for in ``SLOT/licenses/`` and ``PREFIX/licenses/`` and given with ``--license``.
A bundle file is verified against ``--trust`` exactly as ``oemkit verify`` does; its
attached licenses and carried CRL come with it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from oemkit.errors import InputError
from oemkit.models.serving import LicensePolicy
from oemkit.serve.runtime import Source

if TYPE_CHECKING:
    from oemkit.models.manifest import Manifest


@dataclass
class Target:
    """A resolved target: its :class:`Source` and what to remove when serving stops."""

    source: Source
    kind: str
    cleanup: list[Path] = field(default_factory=list)
    profiles: tuple[str, ...] = ()

    def close(self) -> None:
        """Remove the temporary folder a bundle file was unpacked to."""
        for path in self.cleanup:
            shutil.rmtree(path, ignore_errors=True)


def _policy(manifest: Manifest) -> LicensePolicy:
    return LicensePolicy.from_dict(getattr(manifest.runtime, "license", None))


def _source(root_dir: Path, manifest: Manifest, **kw: Any) -> Source:
    model = root_dir / manifest.runtime.model
    return Source(root_dir=root_dir, model=model, name=manifest.name,
                  version=manifest.version, policy=_policy(manifest), **kw)


def open_prefix(prefix: Path, *, trust: Path | None = None,
                licenses: list[Path] | None = None, state_path: Path | None = None) -> Target:
    """The current slot of ``prefix``. Licenses are verified against ``trust`` or, without
    it, the slot's ``trust-root.json`` (the root install verified the bundle against),
    with the slot's ``revocations.crl``.

    Raises:
        InputError: E_NOT_INSTALLED (no current slot), E_SLOT_DAMAGED (no manifest), and
            the trust root's codes (:func:`oemkit.verify.trust.load_pinned`).
    """
    from oemkit._time import parse_time
    from oemkit.host.slot import read_slot
    from oemkit.models.manifest import Manifest
    from oemkit.verify.license import BundleFacts

    current = prefix / "current"
    if not current.is_symlink():
        raise InputError("E_NOT_INSTALLED", f"{prefix} has no current release",
                         hint="install one first: oemkit install BUNDLE --prefix PREFIX "
                              "--trust ROOT")
    slot = current.resolve()
    record = read_slot(slot)
    try:
        data = (slot / "manifest.json").read_bytes()
        manifest = Manifest.from_dict(json.loads(data))
    except (OSError, ValueError) as exc:
        raise InputError("E_SLOT_DAMAGED", f"{slot.name}/manifest.json cannot be read: {exc}",
                         hint="roll back or reinstall the release") from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != record.manifest_sha256:
        raise InputError("E_SLOT_DAMAGED", f"{slot.name}/manifest.json does not match "
                         "slot.json's manifest digest", hint="reinstall the release")
    from oemkit.verify.trust import load_pinned

    # --trust, else the root install verified the bundle against (SLOT/trust-root.json).
    slot_root = slot / "trust-root.json"
    root = (load_pinned(trust) if trust is not None else
            load_pinned(slot_root) if slot_root.is_file() else None)
    crls: list[tuple[str, bytes, bool]] = []
    crl = slot / "revocations.crl"
    if crl.is_file():
        crls.append((str(crl), crl.read_bytes(), False))
    facts = BundleFacts(manifest_sha256=digest, name=manifest.name,
                        build_time=parse_time(manifest.build_time, "build_time"),
                        channel=manifest.channel)
    source = _source(slot / "bundle", manifest, config=slot / "config.json", trust=root,
                     license_files=list(licenses or []),
                     license_dirs=[slot / "licenses", prefix / "licenses"], crls=crls,
                     state_path=state_path, bundle=facts)
    return Target(source, "prefix", profiles=manifest.runtime.profiles)


def open_bundle(bundle: Path, trust: Path, *, licenses: list[Path] | None = None,
                state_path: Path | None = None) -> Target:
    """Verify ``bundle`` against ``trust`` and unpack it to a temporary folder.

    Raises:
        VerificationError: the bundle's verification failure.
        InputError, EnvironmentProblem: as ``oemkit unpack``.
    """
    from oemkit.host.license_state import bundle_facts
    from oemkit.host.unpack import unpack_bundle

    work = Path(tempfile.mkdtemp(prefix="oemkit-serve-"))
    try:
        dest = work / "bundle"
        report = unpack_bundle(bundle, dest, trust)
        if not report.ok:
            assert report.error is not None
            raise report.error
        manifest = report.manifest
        config = dest / manifest.runtime.config["file"] if manifest.runtime.config else None
        crls = [(f"{bundle.name}:revocations.crl", report.crl, False)] if report.crl else []
        source = _source(dest, manifest, config=config, trust=report.root,
                         license_files=list(licenses or []), attached=list(report.licenses),
                         crls=crls, state_path=state_path, bundle=bundle_facts(report))
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return Target(source, "bundle", [work], profiles=manifest.runtime.profiles)


def open_target(target: Path, *, trust: Path | None, licenses: list[Path] | None = None,
                state_path: Path | None = None) -> Target:
    """A prefix (a directory) or a bundle file (which needs ``trust``).

    Raises:
        InputError: E_NOT_FOUND, E_TRUST_REQUIRED, and those of the two openers.
    """
    if target.is_dir():
        return open_prefix(target, trust=trust, licenses=licenses, state_path=state_path)
    if not target.exists():
        raise InputError("E_NOT_FOUND", f"{target} does not exist",
                         hint="pass an install prefix or a bundle file")
    if trust is None:
        raise InputError("E_TRUST_REQUIRED", f"serving the bundle file {target} needs "
                         "--trust ROOT to verify it first",
                         hint="pass --trust with the vendor's trust root")
    return open_bundle(target, trust, licenses=licenses, state_path=state_path)
