"""CycloneDX 1.6 SBOM of a bundle, via cyclonedx-python-lib, byte-reproducible.

The serial number is a UUIDv5 of the bundle's content, the timestamp is the build time,
and every bom-ref is set explicitly, so two builds of the same inputs give the same bytes.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Sequence

from oemkit import __version__
from oemkit.models.manifest import FileEntry

#: Namespace for SBOM serial numbers (UUIDv5 over the bundle's identity and file digests).
SBOM_NAMESPACE = uuid.UUID("6f1c2a8e-3a53-5b6e-9a61-0e6b6d0c0b17")


def make_sbom(name: str, version: str, description: str, files: Sequence[FileEntry],
              model_path: str, build_time: dt.datetime) -> bytes:
    """Return the SBOM document as UTF-8 JSON bytes (sorted keys, 2-space indent)."""
    from cyclonedx.model import HashAlgorithm, HashType
    from cyclonedx.model.bom import Bom
    from cyclonedx.model.bom_ref import BomRef
    from cyclonedx.model.component import Component, ComponentType
    from cyclonedx.output.json import JsonV1Dot6

    identity = "\n".join([name, version] + [f"{f.sha256}  {f.path}" for f in files])
    bom = Bom(serial_number=uuid.uuid5(SBOM_NAMESPACE, identity))
    bom.metadata.timestamp = build_time
    root = Component(name=name, version=version, type=ComponentType.APPLICATION,
                     description=description or None, bom_ref=BomRef(f"bundle:{name}@{version}"))
    bom.metadata.component = root
    bom.metadata.tools.components.add(Component(
        name="oemkit", version=__version__, type=ComponentType.APPLICATION,
        bom_ref=BomRef("tool:oemkit")))
    parts = []
    for entry in files:
        kind = (ComponentType.MACHINE_LEARNING_MODEL if entry.path == model_path
                else ComponentType.FILE)
        component = Component(
            name=entry.path, type=kind, bom_ref=BomRef(f"file:{entry.path}"),
            hashes=[HashType(alg=HashAlgorithm.SHA_256, content=entry.sha256)])
        bom.components.add(component)
        parts.append(component)
    bom.register_dependency(root, parts)
    text = JsonV1Dot6(bom).output_as_string(indent=None)
    return (json.dumps(json.loads(text), indent=2, sort_keys=True, ensure_ascii=False)
            + "\n").encode("utf-8")
