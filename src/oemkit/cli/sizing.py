"""`oemkit sizing BUNDLE ...` and `oemkit sizing compare A.json B.json`."""

from __future__ import annotations

from pathlib import Path

import typer

from oemkit.cli._output import emit_json, err, float_option, guard, int_option, parse_int, safe

JSON_OPT = typer.Option(False, "--json", help="Print one JSON document on stdout.")


def sizing(
    args: list[str] = typer.Argument(..., metavar="BUNDLE | compare A.json B.json"),
    profile: str | None = typer.Option(None, "--profile", help="Profile name or YAML file."),
    trust: Path | None = typer.Option(None, "--trust", help="Pinned trust root."),
    target_qps: float | None = typer.Option(None, "--target-qps",
                                            parser=float_option("--target-qps", 0.001, 1e9),
                                            help="Load to size for."),
    slo: str | None = typer.Option(None, "--slo", help="e.g. p99=50ms (default: the "
                                   "profile's p95 budget)."),
    headroom: float = typer.Option(0.3, "--headroom",
                                   parser=float_option("--headroom", 0.0, 0.95)),
    redundancy: int = typer.Option(0, "--redundancy",
                                   parser=int_option("--redundancy", 0, 1_000_000)),
    batch: str = typer.Option("1,8,32", "--batch", help="Comma-separated batch sizes."),
    threads: str = typer.Option("auto", "--threads", help="auto or e.g. 1,2,4."),
    duration: str = typer.Option("5s", "--duration", help="Time budget per configuration."),
    out: Path = typer.Option(Path("sizing"), "--out", help="Output directory."),
    format: str = typer.Option("json,md,html", "--format", help="Any of json, md, html."),
    force: bool = typer.Option(False, "--force", help="Measure even if the host does not "
                               "satisfy the profile."),
    max_regression: float | None = typer.Option(None, "--max-regression",
                                                parser=float_option("--max-regression", 0.0,
                                                                    1e6),
                                                help="compare: "
                                                "exit 1 when a figure is worse by more "
                                                "than this fraction (e.g. 0.1)."),
    json_out: bool = JSON_OPT,
) -> None:
    """Measure latency, throughput and memory on this host, find the QPS one instance
    sustains inside the SLO, and recommend an instance count for a target load.

    Example: oemkit sizing dist/example-0.2.0.oemb --profile cpu-small --trust
    trust-root.json --target-qps 200 --slo p99=50ms --out sizing/
    Example: oemkit sizing compare old/sizing.json new/sizing.json
    --max-regression 0.1
    """
    with guard(json_out):
        from oemkit.errors import UsageError

        if args[0] == "compare":
            if len(args) != 3:
                raise UsageError("E_USAGE", "sizing compare takes two sizing.json files",
                                 hint="oemkit sizing compare A.json B.json")
            _compare(Path(args[1]), Path(args[2]), max_regression, json_out)
            return
        if len(args) != 1 or profile is None or trust is None:
            raise UsageError("E_USAGE", "sizing takes one bundle, --profile and --trust",
                             hint="oemkit sizing BUNDLE --profile cpu-small --trust ROOT")
        _measure(Path(args[0]), profile, trust, target_qps, slo, headroom, redundancy, batch,
                 threads, duration, out, format, force, json_out)


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


def _measure(bundle, profile, trust, target_qps, slo, headroom, redundancy, batch, threads,
             duration, out, format, force, json_out) -> None:
    import json

    from oemkit._fs import atomic_write_bytes
    from oemkit.errors import UsageError
    from oemkit.measure.sizing import SizingRequest, parse_duration, parse_slo, run_sizing
    from oemkit.report.sizing import to_html, to_markdown

    formats = {f.strip() for f in format.split(",") if f.strip()}
    if not formats or formats - {"json", "md", "html"}:
        raise UsageError("E_USAGE", f"--format {format!r}", hint="any of json, md, html")
    request = SizingRequest(
        target_qps=target_qps,
        slo_p99_ms=_bounded(parse_slo(_short(slo, "--slo")), "--slo", 1e-3, 1e7)
        if slo else None,
        headroom=headroom, redundancy=redundancy, batches=_ints(batch, "--batch"),
        threads=() if threads == "auto" else _ints(threads, "--threads"),
        duration_s=_bounded(parse_duration(_short(duration, "--duration")), "--duration",
                            1e-3, 86400.0), force=force)
    status = err.status("measuring") if err.is_terminal else None
    if status:
        status.start()
    try:
        doc = run_sizing(bundle, profile, trust, request,
                         progress=(lambda m: status.update(f"measuring {m}")) if status
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
        err.print(f"one instance sustains {rec['sustainable_qps_per_instance']:.1f} queries/s "
                  f"at p99 <= {rec['slo_p99_ms']:g} ms")
        if "instances" in rec:
            err.print(f"[bold]instances: {safe(rec['instances'])}[/] = "
                      f"{safe(rec['arithmetic'])}")
    else:
        err.print(f"[bold red]{safe(rec['reason'])}[/]")
    err.print(f"reports in {safe(out)}/"
              + ("" if doc["complete"] else " (INCOMPLETE: interrupted)"))
    if not doc["complete"]:
        raise typer.Exit(1)


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
