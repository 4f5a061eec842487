"""oemkit: offline-first bundles for OEM deployments.

The public API is re-exported lazily so that ``import oemkit`` stays cheap:
``build_bundle``, ``sign_bundle``, ``verify_bundle`` and ``unpack_bundle``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["__version__", "build_bundle", "sign_bundle", "unpack_bundle", "verify_bundle"]

if TYPE_CHECKING:
    from oemkit.host.unpack import unpack_bundle
    from oemkit.release.bundle import build_bundle
    from oemkit.release.sign import sign_bundle
    from oemkit.verify.bundle import verify_bundle

_LAZY = {
    "build_bundle": "oemkit.release.bundle",
    "sign_bundle": "oemkit.release.sign",
    "verify_bundle": "oemkit.verify.bundle",
    "unpack_bundle": "oemkit.host.unpack",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'oemkit' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
