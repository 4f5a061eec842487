"""Corpus cases from the outside hostile review (issue 13), one module per class.

Each ``tests/hostile/review_*.py`` module defines ``cases(c, forge, keys)`` adding its
cases to the corpus; ``make_corpus.generate`` calls them in name order, so a new class is
a new file and nothing else to edit.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

_HERE = Path(__file__).resolve().parent


def _generators() -> list[Callable[..., Any]]:
    out = []
    for path in sorted(_HERE.glob("review_*.py")):
        if path.stem == "review_cases":
            continue
        module = importlib.import_module(f"hostile.{path.stem}")
        out.append(module.cases)
    return out


GENERATORS = _generators()
