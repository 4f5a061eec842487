"""The options many commands share, as ``Annotated`` types: one declaration and one help
text each, so that ``--trust``, ``--json``, ``--out`` and the reader limits mean the same
everywhere.

A command declares ``trust: TrustPinned`` (required, no default: such commands start their
parameters with ``*`` so that it may follow options with defaults), ``json_out: JsonOut =
False``, ``max_files: MaxFiles = DEFAULT_MAX_FILES`` and so on.

The reader-limit defaults (``DEFAULT_MAX_*``, from ``cli._output``) are
``oemkit.verify.bundle.DEFAULT_LIMITS``'s, written out: importing the verifier (and
cryptography with it) would slow ``oemkit --help``; tests/test_cli.py checks they agree.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from oemkit.cli._output import (
    DEFAULT_MAX_FILES,
    DEFAULT_MAX_MEMBER,
    DEFAULT_MAX_PAYLOAD,
    int_option,
)

__all__ = ["DEFAULT_MAX_FILES", "DEFAULT_MAX_MEMBER", "DEFAULT_MAX_PAYLOAD", "JsonOut",
           "MaxFiles", "MaxMember", "MaxPayload", "OutDir", "OutInstead", "TrustCarried",
           "TrustFirst", "TrustPinned", "TrustPinnedChecked", "TrustServe",
           "TrustSignCheck"]

# --------------------------------------------------------------------------- --json

JsonOut = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]

# --------------------------------------------------------------------------- --trust

#: Required: the trust root this host pins; the command verifies against it.
TrustPinned = Annotated[Path, typer.Option("--trust", help="Pinned trust root.")]
#: The same meaning, checked by the command itself (``oemkit sizing``: E_USAGE when absent).
TrustPinnedChecked = Annotated[Path | None, typer.Option("--trust", help="Pinned trust root.")]
#: Optional: without it the command reads the input UNVERIFIED.
TrustFirst = Annotated[Path | None, typer.Option(
    "--trust", help="Verify first against this trust root (else the output is UNVERIFIED).")]
#: ``oemkit build``: not a verification of the bundle, a check of what it carries.
TrustCarried = Annotated[Path | None, typer.Option(
    "--trust", help="The trust root hosts pin: check the carried trust roots and CRL "
    "against it now.")]

#: ``oemkit serve``: verifies a bundle file before serving it, and the licenses of either
#: a bundle file or a prefix (a prefix's release was verified when it was installed).
TrustServe = Annotated[Path | None, typer.Option(
    "--trust", help="Pinned trust root: verifies a bundle file, and the licenses of either.")]

#: ``oemkit sign``: not a verification, a check of the signing keys against the root hosts
#: pin (a key listed without usage bundle is refused, an unlisted one warned about).
TrustSignCheck = Annotated[Path | None, typer.Option(
    "--trust", help="Check the keys against this trust root first: refuse one it lists "
    "without usage bundle, warn about one it does not list.")]
TrustListed = Annotated[Path | None, typer.Option(
    "--trust", help="Also say what this trust root lists each key as (usage, status).")]

# --------------------------------------------------------------------------- --out

#: A directory the command writes its outputs into (``build``, ``sizing``).
OutDir = Annotated[Path, typer.Option("--out", help="Output directory.")]
#: The trust commands: the next version written elsewhere instead of over ROOT.
OutInstead = Annotated[Path | None, typer.Option(
    "--out", help="Write here instead of over ROOT.")]

# --------------------------------------------------------------------------- reader limits

MaxFiles = Annotated[int, typer.Option(
    "--max-files", help="Reader limit: payload files.", parser=int_option("--max-files", 1))]
MaxMember = Annotated[int, typer.Option(
    "--max-member-size", help="Reader limit: bytes per metadata member.",
    parser=int_option("--max-member-size", 1))]
MaxPayload = Annotated[int, typer.Option(
    "--max-payload-bytes", help="Reader limit: payload bytes, compressed or not.",
    parser=int_option("--max-payload-bytes", 1))]
