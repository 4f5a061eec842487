"""Regenerate ``bundles/example/``, the built-in demo bundle, from the scaffolder.

Run it after changing ``oemkit/build/scaffold.py``: ``python bundles/make_example.py``.
``tests/test_scaffold.py`` fails when the committed example drifts from a fresh scaffold.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
NAME = "example"
DESCRIPTION = "Tiny MLP classifier used by the oemkit demo"


def main() -> int:
    """Rebuild ``bundles/example`` in place (atomically) and list what was written."""
    try:
        from oemkit.build.scaffold import scaffold_bundle
    except ImportError:  # a source checkout without oemkit installed
        sys.path.insert(0, str(HERE.parent / "src"))
        from oemkit.build.scaffold import scaffold_bundle

    for rel in scaffold_bundle(NAME, HERE / NAME, force=True, description=DESCRIPTION):
        print(f"bundles/{NAME}/{rel.as_posix()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
