"""One error root for oemkit: every failure carries a stable code, a hint and an exit code.

Exit codes (DESIGN.md): 0 success, 1 verification/policy/test failure, 2 usage error,
3 invalid input or configuration, 4 environment problem, 70 internal error (a bug in
oemkit, never a verdict: sysexits' EX_SOFTWARE), 130 interrupted.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

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


class FormatError(InputError):
    """A document (JSON, manifest, claims, CRL, trust root, config, migration) that does not
    parse or fails its schema: what every parser in :mod:`oemkit.models` raises.

    Exit 3 when it reaches the user as it is; a caller for whom the document is evidence
    (verify: a bundle member, a license, a carried root) restates it with :func:`restate`
    as a :class:`VerificationError` (exit 1), keeping its code, message and fields.
    """


class EnvironmentProblem(OemkitError):
    """The host is the problem: permissions, disk space, a missing provider or tool."""

    exit_code = EXIT_ENV


_E = TypeVar("_E", bound=OemkitError)
#: The fields :func:`restate` copies besides code, message and hint.
_FIELDS = ("member", "check", "field", "expected", "actual")


def restate(exc: OemkitError, family: type[_E], *, message: str | None = None,
            hint: str | None = None, **fields: str | None) -> _E:
    """``exc`` raised again as ``family`` (hence its exit code): the same code, and the
    message, hint, member, check, field, expected and actual copied unless overridden
    (``message``, ``hint``, or a field by name; ``member=None`` clears one). The one way
    a caught code changes family, so no field is dropped by a hand-written copy; the
    error registry's scanner (:mod:`oemkit.codes`) lists every call.

    Raises:
        TypeError: ``fields`` names something other than the five fields.
    """
    unknown = sorted(set(fields) - set(_FIELDS))
    if unknown:
        raise TypeError(f"restate() got unexpected field(s) {unknown}")
    values = {name: fields[name] if name in fields else getattr(exc, name) for name in _FIELDS}
    return family(exc.code, exc.message if message is None else message,
                  hint=exc.hint if hint is None else hint, **values)
