"""The ``oemkit`` command line: a thin typer layer over the library.

The typer app and the root's own commands are :mod:`oemkit.cli.root`; the other command
groups have a module each. ``from oemkit.cli import app`` and ``main`` still work (looked up
on first use), so that importing a typer-free part of this package (:mod:`._print`,
:mod:`._hot`) does not import typer: ``oemkit verify`` and ``oemkit license verify`` answer
without it (:mod:`oemkit.cli._hot`, docs/ARCHITECTURE.md "Start-up").
"""

from __future__ import annotations

from typing import Any

__all__ = ["app", "main"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from oemkit.cli import root

        return getattr(root, name)
    raise AttributeError(f"module 'oemkit.cli' has no attribute {name!r}")
