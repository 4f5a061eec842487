"""Shared fixtures: the example keys, a demo-like trust root, and a signed example bundle."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from helpers import EXAMPLE, KEYS, PASSPHRASE
from oemkit.crypto.keys import PrivateKeyInfo, load_private_file
from oemkit.release.bundle import build_bundle
from oemkit.release.sign import sign_bundle
from oemkit.release.trust import add_key, init_root
from oemkit.verify.trust import parse_root


@pytest.fixture(scope="session")
def keys() -> dict[str, PrivateKeyInfo]:
    """The example keys: root, bundle, license, crl."""
    return {n: load_private_file(KEYS / f"{n}.key", PASSPHRASE)
            for n in ("root", "bundle", "license", "crl")}


@pytest.fixture(scope="session")
def trust_v1(keys) -> bytes:
    """Version 1: the example root key only."""
    return init_root([keys["root"]], names=["root"])


@pytest.fixture(scope="session")
def trust_v2(keys, trust_v1) -> bytes:
    """Version 2: adds the example bundle key for bundle signing (what the demo writes)."""
    return add_key(parse_root(trust_v1), keys["bundle"].public, ["bundle"], [keys["root"]],
                   name="bundle")


@pytest.fixture(scope="session")
def _signed_bundle(tmp_path_factory, keys) -> Path:
    out = tmp_path_factory.mktemp("signed")
    result = build_bundle(EXAMPLE / "bundle.yaml", out)
    sign_bundle(result.path, [keys["bundle"]])
    return result.path


@pytest.fixture
def signed_bundle(_signed_bundle, tmp_path) -> Path:
    """A private copy of the signed example bundle (safe to damage)."""
    dest = tmp_path / _signed_bundle.name
    shutil.copyfile(_signed_bundle, dest)
    return dest


@pytest.fixture
def trust_file(trust_v2, tmp_path) -> Path:
    path = tmp_path / "trust-root.json"
    path.write_bytes(trust_v2)
    return path
