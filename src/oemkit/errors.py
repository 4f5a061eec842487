"""One error root for oemkit: every failure carries a stable code, a hint and an exit code.

Exit codes (DESIGN.md): 0 success, 1 verification/policy/test failure, 2 usage error,
3 invalid input or configuration, 4 environment problem, 70 internal error (a bug in
oemkit, never a verdict: sysexits' EX_SOFTWARE), 130 interrupted.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from oemkit.codes import Code

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INPUT = 3
EXIT_ENV = 4
#: An unexpected exception inside oemkit (``E_INTERNAL``): a crash, not an answer. Scripts
#: must never read it as "verification said no" (1), so it has its own code.
EXIT_INTERNAL = 70
#: Interrupted by the user (Ctrl-C, or end of input at a prompt): 128 + SIGINT.
EXIT_INTERRUPTED = 130


class OemkitError(Exception):
    """Root of every error oemkit raises on purpose.

    ``code`` is stable (``E_...``) and safe to match on in scripts; ``message`` says what
    is wrong and where; ``hint`` says what to do next. ``member``, ``check``, ``field``,
    ``expected`` and ``actual`` pin a verification failure to one place.
    """

    exit_code = EXIT_FAILED

    def __init__(
        self,
        code: str,
        message: str,
        *,
        hint: str = "",
        member: str | None = None,
        check: str | None = None,
        expected: str | None = None,
        actual: str | None = None,
        field: str | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.hint = hint
        self.member = member
        self.check = check
        self.expected = expected
        self.actual = actual
        self.field = field

    def to_dict(self) -> dict[str, Any]:
        """Machine-readable form used by ``--json``."""
        out: dict[str, Any] = {
            "code": self.code,
            "message": self.message,
            "hint": self.hint,
            "exit_code": self.exit_code,
        }
        for name in ("member", "check", "field", "expected", "actual"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"

    def code_info(self) -> Code | None:
        """This error's entry in the error registry (``oemkit.codes``, docs/ERRORS.md), or
        None for an unregistered code. Looked up lazily: raising never imports the registry."""
        from oemkit.codes import REGISTRY

        return REGISTRY.get(self.code)


class VerificationError(OemkitError):
    """The answer is "no": a signature, digest, policy or structure check failed."""

    exit_code = EXIT_FAILED


class UsageError(OemkitError):
    """The command was called wrongly (conflicting or missing options)."""

    exit_code = EXIT_USAGE


class InputError(OemkitError):
    """An input file or configuration is missing, malformed or invalid."""

    exit_code = EXIT_INPUT


class EnvironmentProblem(OemkitError):
    """The host is the problem: permissions, disk space, a missing provider or tool."""

    exit_code = EXIT_ENV
