"""in-toto link metadata for the build step, and starter in-toto layouts (docs/INTOTO.md).

A customer's security team describes who may build a release in an in-toto **layout**
and checks what the vendor ships with ``in-toto-verify``. For that, every signed bundle
carries one in-toto **link** for the step ``build`` per signing key, as in-toto 3.x writes
it with ``--use-dsse``: a DSSE envelope (payload type ``application/vnd.in-toto+json``)
over the JSON of an ``in_toto.models.link.Link``, signed with the release key through
securesystemslib's ``CryptoSigner``, in the member ``links/build.<keyid:8>.link`` (the
keyid as securesystemslib computes it for that key; in-toto's link file name).

What the link records is what ``oemkit build`` recorded in the signed provenance and the
manifest, so any ``oemkit sign`` of the same bundle writes the same link, and build's
output is byte-for-byte what it was before links existed:

- materials: the spec (its file name, as the provenance records it) and every input
  file build read: each payload file under its spec-relative path (a payload path *is*
  the input's path relative to the spec), carried trust roots and the CRL under the
  member names they carry in the bundle (``trust/root-N.json``, ``revocations.crl``);
- products: every payload file (path and SHA-256 from the manifest) and the manifest
  itself as ``oemkit-bundle.json``. The manifest stands for "the bundle": the ``.oemb``
  file's own digest changes whenever a signature, link or license is added, while the
  manifest is bound by the signed provenance and binds the SBOM, the payload archive and
  every carried member by digest.

in_toto (about 90 ms to import) and securesystemslib are imported inside the functions
that need them: ``oemkit --help`` and ``oemkit verify`` never load them.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from oemkit._canonical import sha256_hex
from oemkit.crypto.keys import PrivateKeyInfo, PublicKey
from oemkit.errors import UsageError
from oemkit.models.manifest import LINK_DIR, MANIFEST, REVOCATIONS, TRUST_DIR, Manifest
from oemkit.verify.layout import intoto_key, intoto_keyid

#: The one step oemkit records, and the name of the links it writes.
STEP = "build"
#: The inspection a starter layout runs in the verification directory (see init_layout).
INSPECTION = "check-bundle"
#: The command the link records (in-toto only warns when it differs from the layout's).
COMMAND = ("oemkit", "build")
#: in-toto's DSSE payload type for links and layouts.
PAYLOAD_TYPE = "application/vnd.in-toto+json"
#: The default lifetime of a starter layout.
DEFAULT_LAYOUT_DAYS = 365
#: How many functionary keys a starter layout may name.
MAX_FUNCTIONARIES = 64


def link_name(keyid: str) -> str:
    """The link file name in-toto looks for: ``build.<first 8 of keyid>.link``."""
    return f"{STEP}.{keyid[:8]}.link"


def link_member(public: PublicKey) -> str:
    """The bundle member holding the build link signed by ``public``."""
    return f"{LINK_DIR}{link_name(intoto_keyid(public))}"


def build_artifacts(statement: Mapping[str, Any], manifest: Manifest, manifest_bytes: bytes
                    ) -> tuple[dict[str, dict[str, str]], dict[str, dict[str, str]]]:
    """The build step's (materials, products) as in-toto artifact dicts
    ``{path: {"sha256": hex}}``, from the signed provenance ``statement`` and the
    manifest it binds (see the module docstring for what each holds)."""
    definition = statement["predicate"]["buildDefinition"]
    spec = definition["externalParameters"]["spec"]
    materials: dict[str, dict[str, str]] = {str(spec["path"]): {
        "sha256": str(spec["digest"]["sha256"])}}
    for dependency in definition["resolvedDependencies"]:
        materials[str(dependency["name"])] = {"sha256": str(dependency["digest"]["sha256"])}
    for name, member in sorted(manifest.members.items()):
        if name.startswith(TRUST_DIR) or name == REVOCATIONS:
            materials[name] = {"sha256": member.sha256}
    products = {f.path: {"sha256": f.sha256} for f in manifest.files}
    # A payload file named like the manifest (legal, if odd) keeps its own product entry.
    products.setdefault(MANIFEST, {"sha256": sha256_hex(manifest_bytes)})
    return materials, products


def link_payload(statement: Mapping[str, Any], manifest: Manifest,
                 manifest_bytes: bytes) -> bytes:
    """The DSSE payload of the build link: ``in_toto.models.link.Link`` serialised as
    in-toto 3.x's ``Envelope.from_signable`` does (``json.dumps(attr.asdict(link),
    sort_keys=True)``), so the bytes are a pure function of the bundle."""
    return artifacts_payload(*build_artifacts(statement, manifest, manifest_bytes))


def artifacts_payload(materials: dict[str, dict[str, str]],
                      products: dict[str, dict[str, str]]) -> bytes:
    """:func:`link_payload` from the artifacts (``sign`` drops the parsed provenance
    before this: on a bundle of many files both are megabytes)."""
    import attr
    from in_toto.models.link import Link

    link = Link(name=STEP, materials=materials, products=products, byproducts={},
                command=list(COMMAND), environment={})  # validated by in-toto as it is made
    # Envelope.from_signable's serialisation, without its deep copy of every artifact
    # (attr.asdict recursing into plain dicts): the same bytes (tests/test_intoto.py)
    return json.dumps(attr.asdict(link, recurse=False), sort_keys=True).encode("utf-8")


def sign_link(payload: bytes, key: PrivateKeyInfo) -> bytes:
    """The build link member for ``key``: an in-toto DSSE ``Envelope`` over ``payload``
    with one signature by the key's securesystemslib signer (``CryptoSigner``, or the
    token's; an ECDSA one in its low-S form, as every oemkit signature), serialised as
    in-toto's ``Metadata.dump`` writes a link file."""
    from in_toto.models.metadata import Envelope

    envelope = Envelope(payload=payload, payload_type=PAYLOAD_TYPE, signatures={})
    made = envelope.create_signature(key.sslib_signer())
    if key.algorithm == "ecdsa-p256":  # the low-S form, the only one oemkit verify accepts
        from securesystemslib.signer import Signature  # type: ignore[attr-defined]

        from oemkit.crypto.dsse import low_s

        envelope.signatures[made.keyid] = Signature(
            made.keyid, low_s(bytes.fromhex(made.signature)).hex())
    return json.dumps(envelope.to_dict(), sort_keys=True).encode("utf-8")


def link_is_current(data: bytes, payload: bytes, public: PublicKey) -> bool:
    """True when the link member ``data`` carries exactly ``payload`` with a signature
    that verifies under ``public`` (signing again then keeps it as it is)."""
    from in_toto.models.metadata import Envelope, Metadata

    try:
        envelope = Metadata.from_dict(json.loads(data))
        if not isinstance(envelope, Envelope) or envelope.payload != payload:
            return False
        envelope.verify_signature(intoto_key(public))
    except Exception:  # any damage means "write it again"
        return False
    return True


# --------------------------------------------------------------------------- layouts


@dataclass(frozen=True)
class LayoutInit:
    """What :func:`init_layout` made: the layout file's bytes and what it says."""

    #: The DSSE envelope (JSON) of the signed layout, as ``in-toto-verify --layout`` reads it.
    data: bytes
    #: When the layout expires (RFC 3339, UTC).
    expires: str
    #: in-toto key ids of the functionaries allowed to sign the build link.
    functionaries: tuple[str, ...]
    #: in-toto key id of the layout owner (the key ``in-toto-verify --verification-keys``
    #: and ``oemkit verify --layout-key`` need).
    owner: str
    #: The link file names in-toto will look for, one per functionary.
    links: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        """The JSON ``oemkit layout init --json`` prints (without the layout bytes)."""
        return {"expires": self.expires, "functionaries": list(self.functionaries),
                "owner": self.owner, "links": list(self.links), "step": STEP,
                "inspection": INSPECTION}


def starter_layout_dict(functionaries: Mapping[str, dict[str, Any]], expires: str,
                        threshold: int = 1) -> dict[str, Any]:
    """The starter layout as in-toto ``Layout`` fields: one step ``build`` that the given
    functionaries may sign (``threshold`` of them), and one inspection that checks the
    verification directory (the unpacked payload and the manifest) against its products.

    Rules, matching what ``oemkit sign`` records:

    - build's materials: anything (``ALLOW *``): the spec and the inputs build read;
    - build's products: the manifest is new (``CREATE oemkit-bundle.json``), every other
      product is an input packed unchanged (``MATCH * WITH MATERIALS FROM build``), and
      nothing else (``DISALLOW *``);
    - the inspection ``check-bundle`` runs ``true`` (in-toto needs a command that exits 0;
      its purpose is to record the directory) in the verification directory: the manifest
      must be there (``REQUIRE``), every file must be a build product with the same
      SHA-256 (``MATCH * WITH PRODUCTS FROM build``), and nothing else may be
      (``DISALLOW *``). in-toto leaves out ``*.link*``, ``.git``, ``*.pyc`` and ``*~``
      when it records a directory.
    """
    return {
        "_type": "layout",
        "expires": expires,
        "readme": "oemkit starter layout: one build step signed by the release key(s); "
                  "adapt the rules and keys to your policy (docs/INTOTO.md)",
        "keys": dict(functionaries),
        "steps": [{
            "_type": "step",
            "name": STEP,
            "threshold": threshold,
            "pubkeys": sorted(functionaries),
            "expected_command": list(COMMAND),
            "expected_materials": [["ALLOW", "*"]],
            "expected_products": [["CREATE", MANIFEST],
                                  ["MATCH", "*", "WITH", "MATERIALS", "FROM", STEP],
                                  ["DISALLOW", "*"]],
        }],
        "inspect": [{
            "_type": "inspection",
            "name": INSPECTION,
            "run": ["true"],
            "expected_materials": [["REQUIRE", MANIFEST],
                                   ["MATCH", "*", "WITH", "PRODUCTS", "FROM", STEP],
                                   ["DISALLOW", "*"]],
            "expected_products": [["ALLOW", "*"]],
        }],
    }


def init_layout(functionaries: Sequence[PublicKey], owner: PrivateKeyInfo, *,
                days: int = DEFAULT_LAYOUT_DAYS, expires: dt.datetime | None = None,
                threshold: int = 1, now: dt.datetime | None = None) -> LayoutInit:
    """A starter in-toto layout (:func:`starter_layout_dict`) for the given functionary
    public keys (the release keys ``oemkit sign`` uses), signed by ``owner`` as a DSSE
    envelope (in-toto's ``--use-dsse`` form), valid for ``days`` from ``now`` or until
    ``expires``.

    Raises:
        UsageError: ``E_USAGE``: no functionary key, more than MAX_FUNCTIONARIES, the same
            key twice, a threshold outside 1..number of keys, ``days`` < 1, or an expiry
            not after ``now``.
    """
    from in_toto.models.layout import Layout
    from in_toto.models.metadata import Envelope
    from securesystemslib.signer import SSlibKey  # type: ignore[attr-defined]

    from oemkit._time import format_time, shift
    from oemkit._time import now as clock

    if not functionaries:
        raise UsageError("E_USAGE", "no functionary key given: the layout must name the "
                         "key(s) that may sign the build link",
                         hint="oemkit layout init --functionary keys/bundle.pub "
                              "--owner-key owner.key")
    if len(functionaries) > MAX_FUNCTIONARIES:
        raise UsageError("E_USAGE", f"{len(functionaries)} functionary keys given (at most "
                         f"{MAX_FUNCTIONARIES})", hint="name only the release keys")
    keys = {}
    for public in functionaries:
        key = intoto_key(public)
        if key["keyid"] in keys:
            raise UsageError("E_USAGE", f"functionary key {key['keyid'][:16]}… is given twice",
                             hint="give each release key once")
        keys[key["keyid"]] = key
    if not 1 <= threshold <= len(keys):
        raise UsageError("E_USAGE", f"threshold {threshold} is outside 1..{len(keys)} (the "
                         "number of functionary keys)", hint="use --threshold 1")
    moment = now or clock()
    if expires is None:
        if days < 1:
            raise UsageError("E_USAGE", f"--days {days}: a layout must be valid for at least "
                             "one day", hint="use --days 365 (the default)")
        expires = shift(moment, dt.timedelta(days=days), "layout expiry")
    if expires <= moment:
        raise UsageError("E_USAGE", f"the layout would expire at {format_time(expires)}, not "
                         f"after now ({format_time(moment)})",
                         hint="choose a later --expires, or --days")
    fields = starter_layout_dict(keys, format_time(expires), threshold)
    layout = Layout.read(fields)
    layout.validate()
    envelope = Envelope.from_signable(layout)
    owner_key = SSlibKey.from_crypto(owner.public)
    envelope.create_signature(owner.sslib_signer())
    data = json.dumps(envelope.to_dict(), sort_keys=True).encode("utf-8")
    return LayoutInit(data=data, expires=fields["expires"], functionaries=tuple(sorted(keys)),
                      owner=str(owner_key.keyid),
                      links=tuple(link_name(k) for k in sorted(keys)))


def write_layout(path: Path | str, result: LayoutInit, *, force: bool = False) -> Path:
    """Write the layout atomically (0644); an existing file only with ``force``.

    Raises:
        InputError: ``E_OUTPUT_EXISTS`` (the file exists and not ``force``).
        EnvironmentProblem: ``E_WRITE``.
    """
    from oemkit._fs import atomic_write_bytes
    from oemkit.errors import EnvironmentProblem, InputError

    target = Path(path)
    if target.exists() and not force:
        raise InputError("E_OUTPUT_EXISTS", f"{target} exists; the layout was not written",
                         hint="choose another --out, or pass --force to replace it")
    try:
        atomic_write_bytes(target, result.data, mode=0o644)
    except OSError as exc:
        raise EnvironmentProblem("E_WRITE", f"cannot write {target}: {exc.strerror or exc}",
                                 hint="choose a writable --out") from exc
    return target
