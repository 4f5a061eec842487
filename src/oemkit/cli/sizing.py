"""`oemkit sizing BUNDLE ...` and `oemkit sizing compare A.json B.json`.

``sizing`` is a group with one subcommand, ``compare``; anything else after ``sizing``
(``--help`` too) is the measurement, :func:`measure`, as ``oemkit sizing BUNDLE ...``
(:class:`SizingGroup`). A bundle file named ``compare`` is given as ``./compare``.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Annotated, Any

import typer

from oemkit.cli._options import JsonOut, OutDir, TrustPinnedChecked
from oemkit.cli._output import (
    DefaultCommandGroup,
    emit_json,
    err,
    float_option,
    guard,
    int_option,
    parse_int,
    safe,
)


class SizingGroup(DefaultCommandGroup):
    """``oemkit sizing``: a subcommand by its name; any other first word, an option, or
    nothing at all goes, whole, to the measurement command (:attr:`default_command`), whose
    context stands in for the group's: usage lines and errors read ``oemkit sizing``."""

    @property
    def default_command(self) -> Any:
        return _measure_command()


def measure(
    bundle: Annotated[Path, typer.Argument(metavar="BUNDLE", help="Bundle to size.")],
    profile: Annotated[str | None, typer.Option(
        "--profile", help="Profile name or YAML file.")] = None,
    trust: TrustPinnedChecked = None,
    target_qps: Annotated[float | None, typer.Option(
        "--target-qps", parser=float_option("--target-qps", 0.001, 1e9),
        help="Load to size for.")] = None,
    slo: Annotated[str | None, typer.Option(
        "--slo", help="Latency objective PERCENTILE=TIME, PERCENTILE one of p50, p90, p95, "
        "p99, p99.9 (a bare TIME is p99), TIME in ms or s, e.g. p95=20ms (default: "
        "p95=the profile's p95 budget).")] = None,
    headroom: Annotated[float, typer.Option(
        "--headroom", parser=float_option("--headroom", 0.0, 0.95))] = 0.3,
    redundancy: Annotated[int, typer.Option(
        "--redundancy", parser=int_option("--redundancy", 0, 1_000_000))] = 0,
    batch: Annotated[str, typer.Option(
        "--batch", help="Comma-separated batch sizes.")] = "1,8,32",
    threads: Annotated[str, typer.Option("--threads", help="auto or e.g. 1,2,4.")] = "auto",
    duration: Annotated[str, typer.Option(
        "--duration", help="Time budget per in-process configuration.")] = "5s",
    workers: Annotated[int | None, typer.Option(
        "--workers", parser=int_option("--workers", 1, 256),
        help="Workers of the served instance (default: as oemkit serve chooses).")] = None,
    levels: Annotated[str, typer.Option(
        "--levels", help="Served offered rates, as fractions of the measured capacity "
        "(comma-separated, each above 0 and at most 4).")] = "0.25,0.5,0.7,0.85,1",
    level_duration: Annotated[str, typer.Option(
        "--level-duration", help="Time per served load level.")] = "3s",
    mlperf: Annotated[str, typer.Option(
        "--mlperf", help="MLPerf LoadGen as a second served driver: auto (when "
        "installed), on (required) or off.")] = "auto",
    out: OutDir = Path("sizing"),
    format: Annotated[str, typer.Option(
        "--format", help="Any of json, md, html.")] = "json,md,html",
    force: Annotated[bool, typer.Option(
        "--force", help="Measure even if the host does not satisfy the profile.")] = False,
    quiet: Annotated[bool, typer.Option(
        "--quiet", help="No progress (the spinner on a terminal, else one line per "
        "measurement); errors and the summary still print.")] = False,
    json_out: JsonOut = False,
) -> None:
    """Measure the served runtime on this host (oemkit serve driven over loopback with
    open-loop Poisson load, by oemkit's load generator and MLPerf LoadGen), find the QPS
    one instance sustains inside the SLO, and recommend an instance count for a target
    load; the in-process model-only figures are reported as the ceiling.

    Example: oemkit sizing dist/example-0.2.0.oemb --profile cpu-small --trust
    trust-root.json --target-qps 200 --slo p95=20ms --out sizing/
    Example: oemkit sizing compare old/sizing.json new/sizing.json
    --max-regression 0.1
    """
    with guard(json_out):
        from oemkit.errors import UsageError

        if profile is None or trust is None:
            raise UsageError("E_USAGE", "sizing takes one bundle, --profile and --trust",
                             hint="oemkit sizing BUNDLE --profile cpu-small --trust ROOT")
        _measure(bundle, profile, trust, target_qps, slo, headroom, redundancy, batch,
                 threads, duration, out, format, force, json_out,
                 served=(workers, levels, level_duration, mlperf), quiet=quiet)


sizing_app = typer.Typer(cls=SizingGroup, rich_markup_mode=None, help=measure.__doc__,
                         add_completion=False)


@functools.cache
def _measure_command() -> Any:
    """:func:`measure` as a click command (built once, on first use)."""
    one = typer.Typer(rich_markup_mode=None, add_completion=False)
    one.command()(measure)
    return typer.main.get_command(one)


@sizing_app.command("compare")
def compare(
    a_path: Annotated[Path, typer.Argument(metavar="A.json", help="The earlier sizing.json.")],
    b_path: Annotated[Path, typer.Argument(metavar="B.json", help="The later sizing.json.")],
    max_regression: Annotated[float | None, typer.Option(
        "--max-regression", parser=float_option("--max-regression", 0.0, 1e6),
        help="Exit 1 when a figure is worse by more than this fraction (e.g. 0.1).")] = None,
    json_out: JsonOut = False,
) -> None:
    """Compare two sizing reports figure by figure (B/A), optionally failing on a regression.

    Example: oemkit sizing compare old/sizing.json new/sizing.json --max-regression 0.1
    """
    with guard(json_out):
        _compare(a_path, b_path, max_regression, json_out)


def _ints(text: str, what: str) -> tuple[int, ...]:
    from oemkit.errors import UsageError

    try:
        values = tuple(parse_int(x, what, minimum=1, maximum=1 << 20)
                       for x in text.split(",") if x.strip())
    except UsageError:
        values = ()
    if not values:
        shown = text if len(text) <= 40 else text[:40] + "..."
        raise UsageError("E_USAGE", f"{what} {shown!r} is not a list of positive integers",
                         hint=f"e.g. {what} 1,8,32 (each at most {1 << 20})")
    return values


def _short(text: str, what: str) -> str:
    """Option text of a sane length before it is parsed as a number."""
    from oemkit.errors import UsageError

    if len(text) > 40:
        raise UsageError("E_USAGE", f"{what} {text[:40]!r}... is too long",
                         hint=f"e.g. {what} 50ms")
    return text


def _bounded(value: float, what: str, low: float, high: float) -> float:
    from oemkit.cli._output import parse_float

    return parse_float(value, what, minimum=low, maximum=high)


def _fractions(text: str) -> tuple[float, ...]:
    from oemkit.errors import UsageError

    values = []
    for item in text.split(","):
        try:
            value = float(item) if len(item.strip()) <= 12 else float("nan")
        except ValueError:
            value = float("nan")
        if not 0 < value <= 4:  # NaN fails too
            shown = text if len(text) <= 40 else text[:40] + "..."
            raise UsageError("E_USAGE", f"--levels {shown!r} is not a list of fractions",
                             hint="fractions of the measured capacity, each above 0 and at "
                                  "most 4, e.g. --levels 0.25,0.5,1")
        values.append(value)
    return tuple(values)


def _measure(bundle: Path, profile: str, trust: Path, target_qps: float | None,
             slo: str | None, headroom: float, redundancy: int, batch: str, threads: str,
             duration: str, out: Path, format: str, force: bool, json_out: bool,
             served: tuple[int | None, str, str, str] = (None, "0.25,0.5,0.7,0.85,1", "3s",
                                                         "auto"), quiet: bool = False) -> None:
    import json

    from oemkit._fs import atomic_write_bytes
    from oemkit.errors import UsageError
    from oemkit.measure.sizing import (
        SizingRequest,
        Slo,
        parse_duration,
        parse_slo,
        run_sizing,
    )
    from oemkit.report.sizing import to_html, to_markdown

    formats = {f.strip() for f in format.split(",") if f.strip()}
    if not formats or formats - {"json", "md", "html"}:
        raise UsageError("E_USAGE", f"--format {format!r}", hint="any of json, md, html")
    workers, levels, level_duration, mlperf = served
    if mlperf not in ("auto", "on", "off"):
        raise UsageError("E_USAGE", f"--mlperf {mlperf[:40]!r} is not auto, on or off",
                         hint="e.g. --mlperf off")
    parsed = parse_slo(_short(slo, "--slo")) if slo else None
    if parsed is not None:
        parsed = Slo(parsed.percentile, _bounded(parsed.ms, "--slo", 1e-3, 1e7))
    request = SizingRequest(
        target_qps=target_qps, slo=parsed, workers=workers, levels=_fractions(levels),
        level_duration_s=_bounded(parse_duration(_short(level_duration, "--level-duration"),
                                                 "--level-duration"),
                                  "--level-duration", 0.1, 3600.0),
        mlperf=mlperf,
        headroom=headroom, redundancy=redundancy, batches=_ints(batch, "--batch"),
        threads=() if threads == "auto" else _ints(threads, "--threads"),
        duration_s=_bounded(parse_duration(_short(duration, "--duration")), "--duration",
                            1e-3, 86400.0), force=force)
    # A terminal shows a spinner; anything else (a CI log, a pipe) gets one plain line per
    # measurement, so a run of minutes is never silent. --quiet: neither.
    status = err.status("measuring") if err.is_terminal and not quiet else None
    if status:
        status.start()
    try:
        doc = run_sizing(bundle, profile, trust, request,
                         progress=(lambda m: status.update(f"measuring {m}")) if status
                         else None,
                         measured=_progress_line if not quiet and not err.is_terminal
                         else None)
    finally:
        if status:
            status.stop()
    out.mkdir(parents=True, exist_ok=True)
    if "json" in formats:
        atomic_write_bytes(out / "sizing.json", (json.dumps(doc, indent=2) + "\n").encode())
    if "md" in formats:
        atomic_write_bytes(out / "sizing.md", to_markdown(doc).encode())
    if "html" in formats:
        atomic_write_bytes(out / "sizing.html", to_html(doc).encode())
    if json_out:
        emit_json(doc)
    rec = doc["recommendation"]
    for note in doc["notes"]:
        err.print(f"[yellow]note[/]: {safe(note)}")
    if rec.get("achievable"):
        err.print(f"one instance (oemkit serve, {rec['workers_per_instance']} worker(s)) "
                  f"sustains {rec['sustainable_qps_per_instance']:.1f} queries/s served at "
                  f"{rec['slo_percentile']} <= {rec['slo_ms']:g} ms")
        if "instances" in rec:
            err.print(f"[bold]instances: {safe(rec['instances'])}[/] = "
                      f"{safe(rec['arithmetic'])}")
    else:
        err.print(f"[bold red]{safe(rec['reason'])}[/]")
    err.print(f"reports in {safe(out)}/"
              + ("" if doc["complete"] else " (INCOMPLETE: interrupted)"))
    if not doc["complete"]:
        raise typer.Exit(1)


def _progress_line(message: str) -> None:
    """One finished measurement, as a plain line on stderr (never wrapped)."""
    err.print(f"sizing: {message}", markup=False, highlight=False, soft_wrap=True)


def _compare(a_path: Path, b_path: Path, max_regression: float | None, json_out: bool) -> None:
    from oemkit._canonical import parse_json
    from oemkit._fs import read_input
    from oemkit.errors import InputError
    from oemkit.report.sizing import compare

    docs = []
    for path in (a_path, b_path):
        doc = parse_json(read_input(path, "sizing report"), what=str(path))
        if not isinstance(doc, dict) or not {"configurations", "recommendation"} <= set(doc):
            raise InputError("E_SIZING_INVALID", f"{path} is not an oemkit sizing.json",
                             hint="pass two sizing.json files written by 'oemkit sizing'")
        docs.append(doc)
    a, b = docs
    rows = compare(a, b)
    regressed = [r for r in rows if r["ratio"] is not None and max_regression is not None and (
        (r["higher_is_better"] and r["ratio"] < 1 - max_regression)
        or (not r["higher_is_better"] and r["ratio"] > 1 + max_regression))]
    if json_out:
        emit_json({"ok": not regressed, "rows": rows, "regressed": [r["figure"]
                                                                     for r in regressed]})
    from rich.table import Table

    table = Table(box=None, header_style="bold")
    for col in ("figure", safe(a_path), safe(b_path), "B/A"):
        table.add_column(col)
    for r in rows:
        ratio = "-" if r["ratio"] is None else f"{r['ratio']:.2f}"
        mark = " [red](worse)[/]" if r in regressed else ""
        table.add_row(safe(r["figure"]), f"{r['a']:.4g}" if r["a"] is not None else "-",
                      f"{r['b']:.4g}" if r["b"] is not None else "-", ratio + mark)
    err.print(table)
    if regressed:
        err.print(f"[bold red]{len(regressed)} figure(s) regressed by more than "
                  f"{max_regression:.0%}[/]")
        raise typer.Exit(1)
