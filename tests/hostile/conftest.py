"""Fixtures for the hostile suite (on top of tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import read_members


@pytest.fixture
def members(signed_bundle) -> list[tuple[str, bytes]]:
    """The signed example bundle's outer members, in order."""
    return read_members(signed_bundle)


@pytest.fixture
def bad(tmp_path) -> Path:
    """Where a test writes its hostile bundle."""
    return tmp_path / "hostile.oemb"
