"""in-toto Statement v1 with a SLSA Provenance v1 predicate for a bundle build.

in-toto 3.x has no Statement model, so the statement is a plain dict serialised as
canonical JSON; its subjects bind the manifest and the payload archive by digest.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

from oemkit import __version__
from oemkit._canonical import canonical_json_spliced, splice_marker
from oemkit._time import format_time

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
SLSA_PROVENANCE_V1 = "https://slsa.dev/provenance/v1"
BUILD_TYPE = "https://oemkit.dev/build-types/bundle/v1"
BUILDER_ID = "https://oemkit.dev/builder/oemkit-cli"


def make_statement(
    subjects: Mapping[str, str],
    *,
    spec_name: str,
    spec_sha256: str,
    options: Mapping[str, Any],
    dependencies: Sequence[tuple[str, str, str]],
    build_time: dt.datetime,
) -> bytes:
    """Canonical JSON bytes of the statement. ``subjects`` maps name to SHA-256 hex;
    ``dependencies`` are (payload path, SHA-256, role: model, wheelhouse or file)."""
    statement = {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": n, "digest": {"sha256": d}} for n, d in sorted(subjects.items())],
        "predicateType": SLSA_PROVENANCE_V1,
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": {
                    "spec": {"path": spec_name, "digest": {"sha256": spec_sha256}},
                    "options": dict(options),
                },
                "internalParameters": {},
                "resolvedDependencies": splice_marker(),
            },
            "runDetails": {
                "builder": {"id": BUILDER_ID, "version": {"oemkit": __version__}},
                "metadata": {
                    "startedOn": format_time(build_time),
                    "finishedOn": format_time(build_time),
                },
            },
        },
    }
    return canonical_json_spliced(statement, (
        {"name": path, "digest": {"sha256": digest}, "annotations": {"oemkit.role": role}}
        for path, digest, role in dependencies))
