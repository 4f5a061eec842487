"""Optional dependency groups (pyproject.toml's extras) and the error for a missing one.

The ONNX stack (``onnx``, ``onnxruntime``, ``numpy``) is the ``onnx`` extra: build hosts,
verifiers and license-only runtimes skip it (``pip install oemkit``); the commands that run
or make models need it (``pip install 'oemkit[onnx]'``): ``oemkit init`` (the scaffold's
tiny model and golden data), ``oemkit sizing`` and ``oemkit smoke`` when they measure in
oemkit's own interpreter. Where it is missing they raise ``E_MISSING_EXTRA`` (exit 4) with
the install line as the hint, never an ``ImportError``.
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
        "E_MISSING_EXTRA", f"{what} needs the ONNX stack (the '{ONNX_EXTRA}' extra: "
        f"{', '.join(ONNX_STACK)}); not installed: {', '.join(missing)}", hint=ONNX_HINT)


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
#: runtime plus an ASGI server stack and the metrics client. The ``serve`` extra.
SERVE_EXTRA = "serve"
SERVE_STACK = ("onnxruntime", "numpy", "starlette", "uvicorn", "prometheus_client")
SERVE_HINT = "pip install 'oemkit[serve]' (in a checkout: pip install -e '.[serve]')"


def require_serve(what: str) -> None:
    """Find the serving stack or raise ``E_MISSING_EXTRA`` naming what is missing.

    Looked up, not imported: the supervisor of several workers must fork before
    onnxruntime (threads) or prometheus_client (its value class is chosen at import, by
    ``PROMETHEUS_MULTIPROC_DIR``) are loaded.

    Raises:
        EnvironmentProblem: E_MISSING_EXTRA, with the install line as the hint.
    """
    import importlib.util

    missing = [name for name in SERVE_STACK if importlib.util.find_spec(name) is None]
    if missing:
        raise EnvironmentProblem(
            "E_MISSING_EXTRA", f"{what} needs the serving stack (the '{SERVE_EXTRA}' extra: "
            f"{', '.join(SERVE_STACK)}); not installed: {', '.join(missing)}",
            hint=SERVE_HINT)
