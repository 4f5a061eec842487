"""Signing keys on the command line: a key file, or a signer URI (``pkcs11:…``, ``hsm:…``,
``file:…``), with the PKCS#11 module and PIN options every signing command shares.

``--pin-file`` and ``--pkcs11-module`` are declared once here (``PinFile``,
``Pkcs11Module``); :func:`load_keys` turns a command's key references into loaded keys,
one :class:`~oemkit.crypto.pkcs11.TokenAccess` per command, so a token's PIN is asked for
(and a wrong one tried) once.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from oemkit.cli._print import passphrase_for

if TYPE_CHECKING:
    from oemkit.crypto.keys import PrivateKeyInfo
    from oemkit.crypto.pkcs11 import TokenAccess

#: The help every key option ends with.
KEY_HELP = " A key file, or a signer URI: pkcs11:token=T;object=K (RFC 7512) or hsm:ID?label=T."

PinFile = Annotated[Path | None, typer.Option(
    "--pin-file", metavar="FILE",
    help="PKCS#11 user PIN, first line of FILE (else the URI's pin-source, "
         "$OEMKIT_PKCS11_PIN, or a prompt).")]
Pkcs11Module = Annotated[str | None, typer.Option(
    "--pkcs11-module", metavar="SO",
    help="PKCS#11 module (else the URI's module-path, or $OEMKIT_PKCS11_MODULE).")]
SignWith = Annotated[list[str], typer.Option(
    "--sign-with", metavar="KEY",
    help="Current root key (repeat; none with --propose)." + KEY_HELP)]
Propose = Annotated[bool, typer.Option(
    "--propose", help="Write a proposal (needs --out): signed by the --sign-with keys "
                      "given, if any; the other root-key holders add theirs with 'oemkit "
                      "trust sign'.")]


def token_access(pin_file: Path | None, module: str | None) -> TokenAccess:
    """How this command reaches tokens: ``--pkcs11-module``, ``--pin-file``, a prompt on a
    terminal.

    Raises:
        InputError: E_NOT_FOUND, E_NOT_A_FILE, E_TOO_LARGE for the PIN file.
        EnvironmentProblem: E_PERMISSION.
    """
    from oemkit.crypto.pkcs11 import TokenAccess, read_pin_file

    prompt = None
    if sys.stdin.isatty():
        import getpass

        prompt = getpass.getpass
    pin = read_pin_file(str(pin_file)) if pin_file is not None else None
    return TokenAccess(module=module, pin=pin, prompt=prompt)


def load_keys(refs: list[str], pin_file: Path | None = None, module: str | None = None, *,
              usage: str | None = None, command: str = "") -> list[PrivateKeyInfo]:
    """Load each key ``refs`` names; with ``usage``, refuse a token key recorded for
    another usage (``E_KEY_USAGE``).

    Raises:
        UsageError, InputError, EnvironmentProblem: the codes of
            :func:`oemkit.crypto.keys.load_signing_key`; VerificationError: E_KEY_USAGE.
    """
    from oemkit.crypto.keys import load_signing_key

    access = token_access(pin_file, module) if any(":" in r for r in refs) else None
    keys = [load_signing_key(ref, passphrase_for, access) for ref in refs]
    if usage is not None:
        for key in keys:
            key.require_usage(usage, command)
    return keys


def load_key(ref: str, pin_file: Path | None = None, module: str | None = None, *,
             usage: str | None = None, command: str = "") -> PrivateKeyInfo:
    """:func:`load_keys` for one key.

    Raises:
        The errors of :func:`load_keys`.
    """
    return load_keys([ref], pin_file, module, usage=usage, command=command)[0]


def attestation_key(attest_key: str | None, out: Path | None, pin_file: Path | None,
                    module: str | None, *, example: str) -> PrivateKeyInfo | None:
    """The ``--attest-key`` of a command that signs an attestation into ``--out`` (both or
    neither), loaded before the work it attests; None without one.

    Raises:
        UsageError: E_USAGE (one without the other; ``example`` is the hint).
        The errors of :func:`load_keys`.
    """
    from oemkit.errors import UsageError

    if (attest_key is None) != (out is None):
        raise UsageError("E_USAGE", "--attest-key and --out go together", hint=example)
    return None if attest_key is None else load_key(attest_key, pin_file, module)
