"""``oemkit verify``, ``oemkit license verify`` and ``oemkit status`` without typer: the
commands OEM partners call from their own scripts and start-up paths, often once per file,
and that fleet tooling (the oemkit.airgap Ansible modules) calls on every host.

Importing typer (and building its click command) costs a whole-process start about as much
as the verification itself on a small bundle or a license (benchmarks/RESULTS.md
"Start-up"). So the console script (:mod:`oemkit._entry`) first offers the command line
to :func:`run`: when it is a well-formed ``verify``, ``license verify`` or ``status`` line (the
options below, each as ``--name VALUE`` or ``--name=VALUE``, no ``--help``, nothing
unknown, repeated or odd), this module parses it, runs the command's body and returns its
exit code; anything else returns None and the typer command answers as it always has,
with typer's own help and usage errors. The bodies (:func:`verify_body`,
:func:`license_verify_body`, :func:`status_body`) are the typer commands' bodies too
(``cli/root.py``, ``cli/license.py``, ``cli/install.py`` call them), so the output, the
``--json`` document and the exit code are the same by construction; tests/test_startup.py
checks both paths byte for byte and checks that these option tables match the typer
commands' parameters.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from oemkit.cli._print import (
    DEFAULT_MAX_FILES,
    DEFAULT_MAX_MEMBER,
    DEFAULT_MAX_PAYLOAD,
    check_table,
    emit_json,
    err,
    file_size,
    held,
    int_option,
    limits,
    outcome,
    progress,
    safe,
)

if TYPE_CHECKING:
    from oemkit.models.report import VerifyReport


@dataclass(frozen=True)
class Opt:
    """One option of a hot command: its flag, the body's keyword, what it takes (``path``,
    ``str``, ``int`` through ``parse``, ``flag``, or a repeatable ``paths`` / ``strs``),
    whether it is required and its default."""

    flag: str
    dest: str
    kind: str
    required: bool = False
    default: Any = None
    parse: Callable[[str], Any] | None = None


@dataclass(frozen=True)
class Spec:
    """A hot command: the words that name it, its one positional argument (None: it takes
    none), its options and its body (keyword arguments in, exit code out)."""

    words: tuple[str, ...]
    positional: str | None
    options: tuple[Opt, ...]
    body: Callable[..., int]


def accept(spec: Spec, argv: Sequence[str]) -> dict[str, Any] | None:
    """The body's keyword arguments for ``argv`` (what follows the command's words), or
    None for anything typer should answer: ``--help``, an unknown, repeated or
    value-less option, a value that starts with ``-`` or is empty, a bad number, a missing
    required option, other than one positional (none for a command without)."""
    by_flag = {o.flag: o for o in spec.options}
    values: dict[str, Any] = {}
    positionals: list[str] = []
    words = list(argv)
    i = 0
    while i < len(words):
        word = words[i]
        i += 1
        if not word.startswith("-"):
            positionals.append(word)
            continue
        flag, eq, value = word.partition("=")
        opt = by_flag.get(flag)
        if opt is None:
            return None
        if opt.kind == "flag":
            if eq or opt.dest in values:
                return None
            values[opt.dest] = True
            continue
        if not eq:
            if i >= len(words):
                return None
            value = words[i]
            i += 1
        if not value or value.startswith("-"):
            return None
        if opt.kind in ("paths", "strs"):
            values.setdefault(opt.dest, []).append(Path(value) if opt.kind == "paths" else value)
            continue
        if opt.dest in values:
            return None
        if opt.kind == "path":
            values[opt.dest] = Path(value)
        elif opt.kind == "int":
            assert opt.parse is not None
            try:
                values[opt.dest] = opt.parse(value)
            except Exception:  # typer reports it, in its words
                return None
        else:
            values[opt.dest] = value
    if spec.positional is None:
        if positionals:
            return None
    elif len(positionals) != 1 or positionals[0] == "" or positionals[0] == "-":
        return None
    else:
        values[spec.positional] = Path(positionals[0])
    for opt in spec.options:
        if opt.dest not in values:
            if opt.required:
                return None
            values[opt.dest] = list(opt.default or []) if opt.kind in ("paths", "strs") \
                else opt.default
    return values


def guarded(json_out: bool, body: Callable[..., int], kwargs: dict[str, Any]) -> int:
    """Run ``body`` as ``cli._output.guard`` runs a typer command's body: documents held
    until it ends, any error printed by ``cli._print.outcome``; the exit code."""
    with held() as drop:
        try:
            return body(**kwargs)
        except SystemExit:
            raise
        except BaseException as exc:
            drop()
            return outcome(exc, json_out)


# --------------------------------------------------------------------------- the bodies


def verify_body(*, bundle: Path, trust: Path, json_out: bool, max_files: int, max_member: int,
                max_payload: int, state: Path | None, env: str | None,
                layout: Path | None = None, layout_key: Sequence[Path] = ()) -> int:
    """``oemkit verify``: 0 verified, 1 rejected (the report says why). With ``layout``,
    a bundle the trust root accepts is then checked against the customer's in-toto layout
    by in-toto itself (``verify.layout``; a failure is its ``E_LAYOUT_*`` / ``E_LINK_*``
    error, after the checks that passed)."""
    if layout_key and layout is None:
        from oemkit.errors import UsageError

        raise UsageError("E_USAGE", "--layout-key needs --layout (the layout it signed)",
                         hint="oemkit verify BUNDLE --trust ROOT --layout root.layout "
                              "--layout-key owner.pub")
    from oemkit.verify.bundle import verify_bundle

    reader = limits(max_files, max_member, max_payload)
    with progress("verifying", file_size(bundle)) as cb:
        report = verify_bundle(bundle, trust, progress=cb, limits=reader)
    if report.ok and report.licenses:  # the license machinery only when needed (20 ms)
        from oemkit.host.license_state import default_state_path, judge_attached

        judge_attached(report, state_path=state or default_state_path(), environment=env)
    if layout is None or not report.ok:
        return print_report(report, json_out)
    from oemkit.verify.layout import verify_layout  # in_toto: imported only for --layout

    try:
        checked = verify_layout(bundle, layout, list(layout_key), limits=reader)
    except BaseException:
        check_table(report.checks)  # what passed, then the layout's failure (the guard)
        raise
    code = print_report(report, json_out, {"layout": checked.to_dict()})
    err.print(f"[bold green]LAYOUT OK[/] {safe(checked.summary())}")
    return code


def print_report(report: VerifyReport, json_out: bool,
                 extra: dict[str, Any] | None = None) -> int:
    """A verification report (``verify``, ``unpack``): the JSON document with ``--json``
    (``extra`` keys added to it), the checks and the verdict on stderr; 0 verified, 1
    rejected."""
    if json_out:
        emit_json({**report.to_dict(), **(extra or {})})
    check_table(report.checks)
    if report.ok:
        err.print(f"[bold green]VERIFIED[/] {safe(report.name)} {safe(report.version)} "
                  f"(trust root v{safe(report.trust_root_version)})")
        return 0
    code = report.error.code if report.error is not None else "?"
    err.print(f"[bold red]REJECTED[/] {safe(report.bundle)}: {safe(code)}")
    return 1


def license_verify_body(*, file: Path, trust: Path, bundle: Path | None, crl: list[Path],
                        state: Path | None, env: str | None, require_feature: list[str],
                        require_limit: list[str], json_out: bool) -> int:
    """``oemkit license verify``: 0 valid or in grace; an error (with its code) else."""
    from oemkit._numbers import parse_limits
    from oemkit.crypto.armor import read_armored
    from oemkit.host.license_state import bind_bundle, default_state_path, verify_license
    from oemkit.license import load_trust

    root = load_trust(trust)
    facts, crls = None, list[tuple[str, bytes, bool]]()
    if bundle is not None:
        root, facts, crls = bind_bundle(bundle, root)
    crls += [(str(p), read_armored(p, "CRL"), True) for p in crl]
    check = verify_license(read_armored(file, "license"), root,
                           state_path=state or default_state_path(), crls=crls,
                           bundle=facts, environment=env, what=str(file))
    verdict = check.verdict
    for feature in require_feature:
        verdict.require_feature(feature)
    for item in require_limit:
        name, value = next(iter(parse_limits([item]).items()))
        verdict.require_limit(name, value)
    if json_out:
        emit_json({"ok": True, **verdict.to_dict()})
    c = verdict.claims
    color = "green" if verdict.status == "valid" else "yellow"
    err.print(f"[bold {color}]{safe(verdict.status.upper())}[/] license "
              f"{safe(c.license_id)} (re-issue {c.seq}) for {safe(c.customer_name)} "
              f"({safe(c.customer_id)}), product {safe(c.product)}")
    err.print(f"  expires {c.expires:%Y-%m-%d}, judged at "
              f"{verdict.effective_time:%Y-%m-%dT%H:%M:%SZ}"
              + (f"; grace: {verdict.grace_days_left} days left"
                 if verdict.status == "grace" else ""))
    err.print(f"  features: {safe(', '.join(sorted(c.features))) or '-'}; limits: "
              + (", ".join(f"{safe(k)}={v}" for k, v in sorted(c.limits.items())) or "-"))
    for warning in verdict.warnings:
        err.print(f"  [yellow]warning[/]: {safe(warning)}")
    return 0


def status_body(*, prefix: Path, json_out: bool) -> int:
    """``oemkit status``: the slots of an install prefix (0; an unreadable prefix is an
    error with its code)."""
    from oemkit.host.install import prefix_status

    found = prefix_status(prefix)
    if json_out:
        emit_json({"ok": True, **found.to_dict()})
    from rich.table import Table

    table = Table(box=None, header_style="bold")
    for col in ("", "slot", "version", "manifest", "installed", "oemkit", "config v"):
        table.add_column(col)
    for s in found.slots:
        mark = "current" if s.current else "previous" if s.previous else (
            "incomplete" if s.incomplete else "")
        r = s.record
        table.add_row(*(safe(v) for v in (
            mark, s.name, r.version if r else "-", (r.manifest_sha256 if r else "-")[:12],
            r.installed_at if r else "-", r.oemkit_version if r else "-",
            r.config_version if r else "-")))
    err.print(table)
    for s in found.slots:
        if s.problem:
            err.print(f"  {safe(s.name)}: {safe(s.problem)}")
    err.print(f"current: {safe(found.current or 'none')}; previous: "
              f"{safe(found.previous or 'none')}"
              + ("" if found.consistent else "; INCONSISTENT: roll back or reinstall "
                 "(oemkit rollback, or oemkit install the last good bundle)"))
    return 0


_JSON = Opt("--json", "json_out", "flag", default=False)
_STATE = Opt("--state", "state", "path")
_ENV = Opt("--env", "env", "str")

SPECS = (
    Spec(("verify",), "bundle", (
        Opt("--trust", "trust", "path", required=True), _JSON,
        Opt("--max-files", "max_files", "int", default=DEFAULT_MAX_FILES,
            parse=int_option("--max-files", 1)),
        Opt("--max-member-size", "max_member", "int", default=DEFAULT_MAX_MEMBER,
            parse=int_option("--max-member-size", 1)),
        Opt("--max-payload-bytes", "max_payload", "int", default=DEFAULT_MAX_PAYLOAD,
            parse=int_option("--max-payload-bytes", 1)),
        _STATE, _ENV, Opt("--layout", "layout", "path"),
        Opt("--layout-key", "layout_key", "paths")), verify_body),
    Spec(("license", "verify"), "file", (
        Opt("--trust", "trust", "path", required=True),
        Opt("--bundle", "bundle", "path"),
        Opt("--crl", "crl", "paths"),
        _STATE, _ENV,
        Opt("--require-feature", "require_feature", "strs"),
        Opt("--require-limit", "require_limit", "strs"),
        _JSON), license_verify_body),
    Spec(("status",), None, (Opt("--prefix", "prefix", "path", required=True), _JSON),
         status_body),
)


def run(argv: Sequence[str]) -> int | None:
    """The exit code of a hot command line (``argv`` without the program name), or None
    when typer should answer it."""
    for spec in SPECS:
        n = len(spec.words)
        if tuple(argv[:n]) == spec.words:
            kwargs = accept(spec, argv[n:])
            if kwargs is None:
                return None
            return guarded(bool(kwargs.get("json_out")), spec.body, kwargs)
    return None
