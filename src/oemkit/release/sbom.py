"""CycloneDX 1.6 SBOM of a bundle, via cyclonedx-python-lib, byte-reproducible and fast.

What it lists: every payload file (``file`` with SHA-256), the ONNX model as a
``machine-learning-model`` with a model card, every wheel in the wheelhouse as a
``library`` with its purl, hash and the edges from its ``Requires-Dist``, and the runtime
requirements the spec declares. The serial number is a UUIDv5 of the content, the
timestamp is the build time and every bom-ref is set explicitly.

Speed: cyclonedx-python-lib registers dependencies with a linear scan per component and
builds sorted sets of rich objects, so 10,000 file components take seconds to minutes.
The library therefore serialises the document skeleton and the few rich components (root,
tool, model, libraries), and the plain file components are appended in exactly the shape
the library writes (a test builds small SBOMs both ways and compares them).
"""

from __future__ import annotations

import datetime as dt
import io
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from oemkit import __version__
from oemkit.models.manifest import FileEntry
from oemkit.release.modelcard import ModelCard

#: Namespace for SBOM serial numbers (UUIDv5 over the bundle's identity and file digests).
SBOM_NAMESPACE = uuid.UUID("6f1c2a8e-3a53-5b6e-9a61-0e6b6d0c0b17")


@dataclass(frozen=True)
class Package:
    """A Python package the runtime needs: from the wheelhouse (with its file) or the spec."""

    name: str
    version: str | None
    path: str | None = None
    sha256: str | None = None
    requires: tuple[str, ...] = ()
    license: str | None = None
    specifier: str | None = None
    extra: dict[str, str] = field(default_factory=dict)
    #: The wheel's ``Requires-Dist`` lines as written (markers and extras kept): what the
    #: build's wheelhouse check walks. Not part of the SBOM.
    requires_dist: tuple[str, ...] = ()

    @property
    def purl(self) -> str:
        base = f"pkg:pypi/{self.name}"
        return f"{base}@{self.version}" if self.version else base


def model_card_json(card: ModelCard) -> dict[str, Any]:
    """CycloneDX 1.6 ``modelCard`` for an ONNX model (inputs/outputs, opsets, parameters)."""
    props = [
        ("oemkit:onnx:ir_version", str(card.ir_version)),
        ("oemkit:onnx:producer", f"{card.producer_name} {card.producer_version}".strip()),
        ("oemkit:onnx:graph", card.graph_name),
        ("oemkit:onnx:parameters", str(card.parameter_count)),
        ("oemkit:onnx:initializers", str(card.initializers)),
        ("oemkit:onnx:nodes", str(card.nodes)),
        ("oemkit:onnx:external_data", "true" if card.external_data else "false"),
    ]
    props += [(f"oemkit:onnx:opset:{d}", str(v)) for d, v in sorted(card.opsets.items())]
    return {
        "modelParameters": {
            "architectureFamily": "onnx",
            "modelArchitecture": card.graph_name or "onnx-graph",
            "inputs": [{"format": i.describe()} for i in card.inputs],
            "outputs": [{"format": o.describe()} for o in card.outputs],
        },
        "properties": [{"name": n, "value": v} for n, v in props if v],
    }


def make_sbom(
    name: str, version: str, description: str, files: Sequence[FileEntry], model_path: str,
    build_time: dt.datetime, *, model_card: ModelCard | None = None,
    packages: Sequence[Package] = (), fast: bool = True,
) -> bytes:
    """Return the SBOM as UTF-8 JSON bytes (sorted keys, 2-space indent).

    ``fast=False`` puts every file component through the library too (slow; for tests).
    """
    from cyclonedx.model import HashAlgorithm, HashType, Property
    from cyclonedx.model.bom import Bom
    from cyclonedx.model.bom_ref import BomRef
    from cyclonedx.model.component import Component, ComponentType
    from cyclonedx.model.dependency import Dependency
    from cyclonedx.model.license import DisjunctiveLicense
    from cyclonedx.output.json import JsonV1Dot6
    from packageurl import PackageURL

    identity = "\n".join([name, version] + [f"{f.sha256}  {f.path}" for f in files])
    bom = Bom(serial_number=uuid.uuid5(SBOM_NAMESPACE, identity))
    bom.metadata.timestamp = build_time
    root = Component(name=name, version=version, type=ComponentType.APPLICATION,
                     description=description or None, bom_ref=BomRef(f"bundle:{name}@{version}"),
                     purl=PackageURL("generic", name=name, version=version))
    bom.metadata.component = root
    bom.metadata.tools.components.add(Component(
        name="oemkit", version=__version__, type=ComponentType.APPLICATION,
        bom_ref=BomRef("tool:oemkit")))

    def sha(digest: str) -> list[HashType]:
        return [HashType(alg=HashAlgorithm.SHA_256, content=digest)]

    rich: list[Component] = []
    plain: list[FileEntry] = []
    for entry in files:
        if entry.path == model_path:
            rich.append(Component(name=entry.path, type=ComponentType.MACHINE_LEARNING_MODEL,
                                  bom_ref=BomRef(f"file:{entry.path}"), hashes=sha(entry.sha256)))
        elif fast:
            plain.append(entry)
        else:
            rich.append(Component(name=entry.path, type=ComponentType.FILE,
                                  bom_ref=BomRef(f"file:{entry.path}"), hashes=sha(entry.sha256)))
    libraries: dict[str, Component] = {}
    for pkg in packages:
        props = [Property(name="oemkit:path", value=pkg.path)] if pkg.path else []
        if pkg.specifier:
            props.append(Property(name="oemkit:requirement", value=pkg.specifier))
        libraries[pkg.name] = Component(
            name=pkg.name, version=pkg.version, type=ComponentType.LIBRARY,
            bom_ref=BomRef(pkg.purl), purl=PackageURL.from_string(pkg.purl),
            hashes=sha(pkg.sha256) if pkg.sha256 else [], properties=props,
            licenses=[DisjunctiveLicense(name=pkg.license)] if pkg.license else [])
    top = rich + list(libraries.values())
    bom.components.update(top)
    bom.dependencies.add(Dependency(ref=root.bom_ref,
                                    dependencies=[Dependency(ref=c.bom_ref) for c in top]))
    for pkg in packages:
        edges = [Dependency(ref=libraries[r].bom_ref) for r in pkg.requires if r in libraries]
        bom.dependencies.add(Dependency(ref=libraries[pkg.name].bom_ref, dependencies=edges))
    for component in rich:
        bom.dependencies.add(Dependency(ref=component.bom_ref))
    doc: dict[str, Any] = json.loads(JsonV1Dot6(bom).output_as_string(indent=None))
    if model_card is not None:
        for comp in doc.get("components", []):
            if comp["type"] == "machine-learning-model":
                comp["modelCard"] = model_card_json(model_card)
    return dump_sbom(doc, plain=plain, root_ref=f"bundle:{name}@{version}")


def dump_sbom(doc: dict[str, Any], *, plain: Sequence[FileEntry] = (),
              root_ref: str | None = None) -> bytes:
    """Normalised bytes: components and dependencies sorted by ref, keys sorted, 2-space
    indent, exactly ``json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False)``.

    ``plain`` file components (and their dependency entries, and their edges from
    ``root_ref``) are written from a template instead of being put into ``doc``: at 100,000
    files the dicts and the pure-Python indenting encoder's chunk list took 350 MB; this
    way the cost is one short bytes object per component.
    """
    dumps = json.dumps
    comps: list[tuple[str, Any]] = [(c["bom-ref"], c) for c in doc.get("components", [])]
    comps += [(f"file:{e.path}", e) for e in plain]
    comps.sort(key=lambda kv: kv[0])
    deps: list[tuple[str, Any]] = []
    for dep in doc.get("dependencies", []):
        on = dep.get("dependsOn")
        if on is not None or dep["ref"] == root_ref:
            refs = list(on or [])
            if dep["ref"] == root_ref:
                refs += [f"file:{e.path}" for e in plain]
            dep = dict(dep, dependsOn=sorted(refs))
        deps.append((dep["ref"], dep))
    deps += [(f"file:{e.path}", None) for e in plain]
    deps.sort(key=lambda kv: kv[0])

    def component(ref: str, item: Any) -> bytes:
        return _file_component_text(item) if isinstance(item, FileEntry) else _indented(item, 2)

    def dependency(ref: str, item: Any) -> bytes:
        if item is None:
            return b'    {\n      "ref": ' + dumps(ref, ensure_ascii=False).encode() + b"\n    }"
        return _dependency_text(item)

    arrays = {"components": (comps, component), "dependencies": (deps, dependency)}
    out = io.BytesIO()  # getvalue() hands over its buffer: no second copy of the SBOM
    out.write(b"{")
    keys = sorted(set(doc) | set(arrays))
    for i, key in enumerate(keys):
        out.write(b"\n  " + dumps(key, ensure_ascii=False).encode() + b": ")
        if key in arrays:
            items, render = arrays[key]
            if not items:
                out.write(b"[]")
            for n, (ref, item) in enumerate(items):
                out.write(b",\n" if n else b"[\n")
                out.write(render(ref, item))
            if items:
                out.write(b"\n  ]")
        else:
            out.write(_indented(doc[key], 1, first=False))
        if i + 1 < len(keys):
            out.write(b",")
    out.write(b"\n}\n")
    return out.getvalue()


def _indented(value: Any, level: int, *, first: bool = True) -> bytes:
    """``value`` as the indenting encoder writes it at nesting ``level`` (first line
    indented too unless ``first`` is false)."""
    pad = "  " * level
    text = json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False).replace(
        "\n", "\n" + pad)
    return ((pad if first else "") + text).encode()


def _file_component_text(entry: FileEntry) -> bytes:
    """A payload file exactly as cyclonedx-python-lib serialises a FILE component, at
    nesting level 2, without building the dict."""
    name = json.dumps(entry.path, ensure_ascii=False)
    ref = json.dumps(f"file:{entry.path}", ensure_ascii=False)
    return (f'    {{\n      "bom-ref": {ref},\n      "hashes": [\n        {{\n'
            f'          "alg": "SHA-256",\n          "content": {json.dumps(entry.sha256)}\n'
            f'        }}\n      ],\n      "name": {name},\n      "type": "file"\n    }}'
            ).encode()


def _dependency_text(dep: dict[str, Any]) -> bytes:
    """A dependency entry at nesting level 2; a long ``dependsOn`` is joined directly."""
    on = dep.get("dependsOn")
    if on is None or len(dep) != 2:
        return _indented(dep, 2)
    refs = ",\n".join("        " + json.dumps(r, ensure_ascii=False) for r in on)
    body = f"[\n{refs}\n      ]" if on else "[]"
    return (f'    {{\n      "dependsOn": {body},\n      "ref": '
            f'{json.dumps(dep["ref"], ensure_ascii=False)}\n    }}').encode()
