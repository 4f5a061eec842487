"""Optional dependency groups (pyproject.toml's extras) and the error for a missing one.

The serving stack (``onnxruntime``, ``numpy``, Starlette on uvicorn, ``prometheus_client``,
``orjson``) is in oemkit's core dependencies (issue 15: ``pip install -e . && oemkit demo``
serves), imported lazily so that build hosts, verifiers and license-only runtimes never load it;
``onnx``, the model-building package, is the ``onnx`` extra (``pip install
'oemkit[onnx]'``): ``oemkit init`` makes the scaffold's tiny model with it. The commands
that run or make models (``oemkit init``, ``oemkit sizing`` and ``oemkit smoke`` in
oemkit's own interpreter, ``oemkit serve``) check for what they need and raise
``E_MISSING_EXTRA`` (exit 4) with the install line as the hint, never an ``ImportError``
(a ``--no-deps`` install, or a broken one, lacks them).
"""

from __future__ import annotations

from collections.abc import Sequence

from oemkit.errors import EnvironmentProblem

#: The extra's name in pyproject.toml and the modules it provides.
ONNX_EXTRA = "onnx"
ONNX_STACK = ("onnx", "onnxruntime", "numpy")
ONNX_HINT = "pip install 'oemkit[onnx]' (in a checkout: pip install -e '.[onnx]')"


def missing_onnx(what: str, missing: Sequence[str]) -> EnvironmentProblem:
    """The ``E_MISSING_EXTRA`` error for ``what`` (a command) lacking ``missing`` modules."""
    return EnvironmentProblem(
        "E_MISSING_EXTRA", f"{what} needs the ONNX stack ({', '.join(ONNX_STACK)}: onnx is "
        f"the '{ONNX_EXTRA}' extra, the others oemkit's own dependencies); not installed: "
        f"{', '.join(missing)}", hint=ONNX_HINT)


def require_onnx(what: str, modules: Sequence[str] = ONNX_STACK) -> None:
    """Import ``modules`` (default: the whole ONNX stack) or raise ``E_MISSING_EXTRA``.

    Raises:
        EnvironmentProblem: E_MISSING_EXTRA, naming ``what`` and every missing module.
    """
    missing = []
    for name in modules:
        try:
            __import__(name)  # the import statement's own hook (builtins.__import__)
        except ImportError:
            missing.append(name)
    if missing:
        raise missing_onnx(what, missing)


#: The serving runtime (``oemkit serve``, and smoke and sizing against it): the ONNX
#: runtime plus an ASGI server stack and the metrics client, oemkit's core dependencies
#: (the ``serve`` extra is kept, empty, for older install lines).
SERVE_EXTRA = "serve"
SERVE_STACK = ("onnxruntime", "numpy", "starlette", "uvicorn", "prometheus_client", "orjson")
SERVE_HINT = ("reinstall oemkit with its dependencies: pip install oemkit (in a checkout: "
              "pip install -e .)")


def require_serve(what: str) -> None:
    """Find the serving stack or raise ``E_MISSING_EXTRA`` naming what is missing.

    Looked up, not imported: the supervisor of several workers must fork before
    onnxruntime (threads) or prometheus_client (its value class is chosen at import, by
    ``PROMETHEUS_MULTIPROC_DIR``) are loaded.

    Raises:
        EnvironmentProblem: E_MISSING_EXTRA, with the install line as the hint.
    """
    missing = _absent(SERVE_STACK)
    if missing:
        raise EnvironmentProblem(
            "E_MISSING_EXTRA", f"{what} needs the serving stack (oemkit's dependencies "
            f"{', '.join(SERVE_STACK)}); not installed: {', '.join(missing)}",
            hint=SERVE_HINT)


#: ``oemkit oci`` (and the registry side of ``oemkit image``): the oras SDK's token flow
#: and requests' session, the ``oci`` extra.
OCI_EXTRA = "oci"
OCI_STACK = ("oras", "requests")


def require_oci(what: str) -> None:
    """Find the ``oci`` extra or raise ``E_MISSING_EXTRA`` naming what is missing.

    Raises:
        EnvironmentProblem: E_MISSING_EXTRA, with the install line as the hint.
    """
    missing = _absent(OCI_STACK)
    if missing:
        raise EnvironmentProblem(
            "E_MISSING_EXTRA", f"{what} needs the '{OCI_EXTRA}' extra "
            f"({', '.join(OCI_STACK)}); not installed: {', '.join(missing)}",
            hint="pip install 'oemkit[oci]' (in a checkout: pip install -e '.[oci]')")


def _absent(modules: Sequence[str]) -> list[str]:
    """The ``modules`` not installed: looked up, not imported."""
    import importlib.util

    return [name for name in modules if importlib.util.find_spec(name) is None]
