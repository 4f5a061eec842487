"""The ``oemkit`` console script.

``oemkit serve ...`` goes straight to the serving runtime's own parser
(:mod:`oemkit.serve.entry`): a service starts without importing the CLI layer, which
would cost it about 0.4 s of cold start and 20-36 MB in every worker. A well-formed
``oemkit verify ...``, ``oemkit license verify ...`` or ``oemkit status ...`` line is run
by :mod:`oemkit.cli._hot`, also without typer (the commands partners and fleet tooling
call once per file or host).
Every other command line, and a line those parsers do not accept (``--help``, a usage
error), runs the typer CLI (:mod:`oemkit.cli`), which answers exactly as it always has.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from oemkit.serve.entry import ServeArgs


def main() -> None:
    """Console-script entry point (``oemkit`` and ``python -m oemkit``)."""
    if sys.argv[1:2] == ["serve"]:
        from oemkit.serve.entry import accept

        args = accept(sys.argv[2:])
        if args is not None:
            raise SystemExit(_serve(args))
    if sys.argv[1:2] in (["verify"], ["license"], ["status"]):
        from oemkit.cli._hot import run

        code = run(sys.argv[1:])
        if code is not None:
            raise SystemExit(code)
    from oemkit.cli.root import main as cli_main

    cli_main()


def _serve(args: ServeArgs) -> int:
    """Run the server; an error is reported by the CLI's own mapping (message, hint, exit
    code), imported only then."""
    from oemkit.serve.entry import start

    try:
        return start(args)
    except (Exception, KeyboardInterrupt):
        import typer

        from oemkit.cli._output import guard

        try:
            with guard(False):
                raise
        except typer.Exit as exc:
            return int(exc.exit_code)
    return 70  # pragma: no cover - guard always raises typer.Exit
