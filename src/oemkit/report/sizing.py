"""Sizing reports: Markdown, self-contained HTML with inline SVG charts (no network, no
CDN: it works from a USB stick), a Kubernetes resources snippet, and comparisons."""

from __future__ import annotations

import html
import math
import re
from typing import Any

from oemkit.errors import InputError


def k8s_snippet(doc: dict[str, Any]) -> str:
    """Requests/limits and replicas for one Deployment of the bundle (the served figures:
    one replica is one ``oemkit serve`` with its workers)."""
    rec = doc.get("recommendation", {})
    memory = max(64, math.ceil((rec.get("memory_mb_per_instance") or 256) * 1.5))
    cores = rec.get("cores_per_instance") or 1
    replicas = rec.get("instances", 1) if rec.get("achievable") else 0
    return (f"# oemkit sizing for {doc.get('name')} {doc.get('version')} "
            f"(manifest sha256:{str(doc.get('manifest_sha256'))[:16]}...)\n"
            f"replicas: {replicas}\n"
            "resources:\n"
            f"  requests: {{cpu: \"{cores}\", memory: \"{memory}Mi\"}}\n"
            f"  limits: {{cpu: \"{cores}\", memory: \"{memory * 2}Mi\"}}\n")


def _ms(value: Any, digits: int = 3) -> str:
    return "-" if not isinstance(value, (int, float)) else f"{value:.{digits}f}"


def _rows(doc: dict[str, Any]) -> list[list[str]]:
    rows = []
    for c in doc["configurations"]:
        s = c["stream"]
        rows.append([str(c["batch"]), str(c["threads"]), f"{c['session_ms']:.1f}",
                     f"{c['first_inference_ms']:.2f}", f"{s['p50']:.3f}", f"{s['p95']:.3f}",
                     f"{s['p99']:.3f}", f"{s['p99_ci'][0]:.3f}-{s['p99_ci'][1]:.3f}",
                     f"{s['throughput_samples_s']:.0f}",
                     f"{c.get('cpu_utilisation_cores') or 0:.2f}",
                     f"{c.get('peak_rss_mb') or 0:.0f}", str(s["samples"])])
    return rows


HEADERS = ["batch", "threads", "session ms", "first ms", "p50 ms", "p95 ms", "p99 ms",
           "p99 95% CI", "samples/s", "CPU cores", "peak RSS MB", "samples"]
#: The latency columns of the served tables.
PCTS = ("p50", "p90", "p95", "p99", "p99.9")


def _table(headers: list[str], rows: list[list[str]]) -> list[str]:
    return (["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
            + ["| " + " | ".join(r) + " |" for r in rows])


def _slo_text(doc: dict[str, Any]) -> str:
    percentile, ms = _slo(doc)
    return f"{percentile} <= {ms:g} ms"


def _yes(value: Any) -> str:
    return "-" if value is None else ("yes" if value else "no")


def _served_lines(doc: dict[str, Any]) -> list[str]:
    served = doc.get("served")
    if not served:
        return ["## Served (oemkit serve over loopback)", "",
                "- not measured (see the notes): no served figures, so no recommendation", ""]
    lines = [f"## Served: oemkit serve, {served.get('workers')} worker(s), over loopback "
             f"(SLO {_slo_text(doc)})", "",
             f"- ready in {served.get('ready_s') or 0:.2f} s; "
             f"{served.get('rows_per_request') or 'all golden'} row(s) per request; peak "
             f"RSS of the server processes {served.get('memory_mb') or 0:.0f} MB; closed-loop "
             f"capacity {served.get('capacity_qps') or 0:.1f} queries/s",
             "- oemkit's driver: open-loop Poisson arrivals, latency from each request's "
             "scheduled send to its parsed response (coordinated omission counted); queue, "
             "compute and server time are the server's own means between two /metrics "
             "scrapes; outside = the driver's mean minus the server's (HTTP, loopback, the "
             "driver)", ""]
    rows = []
    for c in served.get("closed_loop") or []:
        lat = c["latency_ms"]
        rows.append([str(c["concurrency"]), f"{c.get('achieved_qps') or 0:.1f}"]
                    + [_ms(lat.get(p)) for p in PCTS] + [str(c.get("errors", 0))])
    if rows:
        lines += [*_table(["closed loop: connections", "achieved QPS",
                           *(f"{p} ms" for p in PCTS), "errors"], rows), ""]
    rows = []
    for lv in served.get("levels") or []:
        f, split = lv["oemkit"], lv.get("split") or {}
        rows.append([f"{lv['rate']:.1f}", f"{f.get('achieved_qps') or 0:.1f}"]
                    + [_ms(f["latency_ms"].get(p)) for p in PCTS]
                    + [str(f.get("errors", 0)), _ms(split.get("queue_ms_mean")),
                       _ms(split.get("compute_ms_mean")), _ms(split.get("server_ms_mean")),
                       _ms(split.get("outside_server_ms_mean")),
                       _ms(split.get("batch_rows_mean"), 2),
                       _ms(f.get("driver_cpu_cores"), 2), _ms(f.get("server_cpu_cores"), 2),
                       _yes(lv.get("meets_slo"))])
    lines += [*_table(["offered QPS", "achieved QPS", *(f"{p} ms" for p in PCTS), "errors",
                       "queue ms", "compute ms", "server ms", "outside ms", "batch rows",
                       "driver CPU", "server CPU", "meets SLO"], rows), ""]
    mlperf = [lv for lv in served.get("levels") or [] if lv.get("mlperf_loadgen")]
    if mlperf:
        rows = []
        for lv in mlperf:
            m, f = lv["mlperf_loadgen"], lv["oemkit"]
            key = _slo(doc)[0]
            rows.append([f"{lv['rate']:.1f}", f"{m.get('scheduled_qps') or 0:.1f}",
                         f"{m.get('achieved_qps') or 0:.1f}"]
                        + [_ms(m["latency_ms"].get(p)) for p in PCTS]
                        + [str(m.get("errors", 0)), str(m.get("validity") or "-"),
                           _yes(m.get("meets_slo")),
                           f"{_ms(f['latency_ms'].get(key))} / "
                           f"{_ms(m['latency_ms'].get(key))}"])
        lines += ["## Served, side by side: MLPerf LoadGen (Server scenario)", "",
                  "- the same offered rates through MLPerf LoadGen, its system under test "
                  "sending the same HTTP request from a thread pool; LoadGen's own VALID / "
                  "INVALID verdict includes its early-stopping rule (it wants more queries "
                  "than a short level holds); meets SLO applies oemkit's rule to its figures",
                  ""]
        lines += [*_table(["offered QPS", "scheduled QPS", "completed QPS",
                           *(f"{p} ms" for p in PCTS), "errors", "LoadGen result",
                           "meets SLO", f"{_slo(doc)[0]} oemkit / LoadGen"], rows), ""]
    drivers = served.get("drivers") or {}
    rows = []
    own = drivers.get("oemkit", {}).get("trivial_endpoint")
    if own:
        rows.append(["oemkit", "GET /v2/health/live, open loop at "
                     f"{own.get('offered_qps') or 0:.1f}/s", _ms(own["latency_ms"].get("p50")),
                     _ms(own["latency_ms"].get("p99")), _ms(own.get("driver_cpu_cores"), 2)])
        lag = own.get("lag_ms") or {}
        rows.append(["oemkit", "scheduling lag (actual - scheduled send)",
                     _ms(lag.get("p50")), _ms(lag.get("p99")), "-"])
    lg = drivers.get("mlperf_loadgen", {})
    for key, what in (("null_sut", "a SUT that completes at once (no HTTP)"),
                      ("trivial_endpoint", "GET /v2/health/live through its SUT")):
        item = lg.get(key)
        if item and item.get("latency_ms"):
            rows.append([f"MLPerf LoadGen {lg.get('version') or ''}".strip(),
                         f"{what}, at {item.get('offered_qps') or 0:.1f}/s",
                         _ms(item["latency_ms"].get("p50")), _ms(item["latency_ms"].get("p99")),
                         _ms(item.get("driver_cpu_cores"), 2)])
    if rows:
        lines += ["## Driver overheads (each driver in its own process)", ""]
        lines += [*_table(["driver", "measured", "p50 ms", "p99 ms", "driver CPU"], rows), ""]
    return lines


def to_markdown(doc: dict[str, Any]) -> str:
    """The sizing report as Markdown: the recommendation (from the served figures), the
    served tables (both drivers, the queue/compute split, the overheads), then the
    model-only ceiling (in process), the notes and the Kubernetes snippet."""
    rec = doc.get("recommendation", {})
    host = doc["host"]
    lines = [f"# Sizing: {doc.get('name')} {doc.get('version')}", "",
             f"- bundle manifest sha256: `{doc.get('manifest_sha256')}`",
             f"- host: {host['cpu_model']} ({host['arch']}), {host['cores']} cores, "
             f"{host['memory_mb']} MB, onnxruntime {host['onnxruntime']}, providers "
             f"{', '.join(host['providers'])}",
             f"- profile: {doc['profile']['name']}; oemkit {doc['oemkit_version']}",
             f"- SLO: {_slo_text(doc)}",
             f"- complete: {'yes' if doc['complete'] else 'NO (interrupted)'}"]
    if doc.get("unmet"):
        lines.append("- --force: this host does not satisfy the profile: "
                     + "; ".join(doc["unmet"]))
    lines += ["", "## Recommendation (from the served figures)", ""]
    if rec.get("achievable"):
        lines.append(f"- sustainable QPS per instance (served, {_slo_text(doc)}): "
                     f"{rec['sustainable_qps_per_instance']:.1f}")
        if "instances" in rec:
            lines.append(f"- instances: **{rec['instances']}** = {rec['arithmetic']}")
        lines.append(f"- per instance: one oemkit serve with {rec.get('workers_per_instance')} "
                     f"worker(s), {rec['cores_per_instance']} core(s), "
                     f"{rec.get('memory_mb_per_instance')} MB peak RSS")
        if rec.get("mlperf_loadgen_agrees") is False:
            lines.append("- MLPerf LoadGen missed the SLO at that rate: size with headroom")
    else:
        lines.append(f"- {rec.get('reason')}")
    lines.append("")
    lines += _served_lines(doc)
    ceiling = doc.get("ceiling") or {}
    lines += ["## Model-only ceiling: single stream in process (no HTTP, no server), per "
              "batch size and thread count", "",
              "- session.run in a loop in a fresh process: an upper bound no served instance "
              "reaches; not used for the recommendation", ""]
    lines += _table(HEADERS, _rows(doc))
    lines += ["", f"## Model-only ceiling: Poisson arrivals in process (one session, SLO "
              f"{_slo_text(doc)})", ""]
    if ceiling.get("achievable"):
        lines += [f"- model-only ceiling: {ceiling['sustainable_qps_per_instance']:.1f} "
                  "queries/s per session", ""]
    elif ceiling.get("reason"):
        lines += [f"- model-only: {ceiling['reason']}", ""]
    rows = [[f"{p['rate']:.1f}", f"{p['achieved_qps']:.1f}"]
            + [_ms(p.get(q)) for q in PCTS] + [_yes(p.get("meets_slo"))]
            for p in doc["server"]]
    lines += _table(["offered QPS", "achieved QPS"] + [f"{q} ms" for q in PCTS]
                    + ["meets SLO"], rows)
    if doc["notes"]:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in doc["notes"]]
    lines += ["", "## Kubernetes", "", "```yaml", k8s_snippet(doc).rstrip(), "```", ""]
    return "\n".join(lines)


def _inline(text: str) -> str:
    """One line of the Markdown report as HTML: `code` as <code>, **bold** as <strong>,
    everything else escaped (a backtick or an asterisk never leaks into the page)."""
    out = []
    for i, part in enumerate(re.split(r"`([^`]*)`", text)):
        if i % 2:
            out.append(f"<code>{html.escape(part)}</code>")
            continue
        for j, piece in enumerate(re.split(r"\*\*(.+?)\*\*", part)):
            out.append(f"<strong>{html.escape(piece)}</strong>" if j % 2
                       else html.escape(piece))
    return "".join(out)


def _rank(percentile: str) -> float:
    return float(percentile.lstrip("p"))


def _slo(doc: dict[str, Any]) -> tuple[str, float]:
    """The SLO's percentile and milliseconds: ``request.slo`` ({percentile, ms}) where the
    report has it, else the older ``request.slo_p99_ms``."""
    request = doc["request"]
    slo = request.get("slo")
    if isinstance(slo, dict) and isinstance(slo.get("ms"), (int, float)):
        return str(slo.get("percentile") or "p99"), float(slo["ms"])
    return "p99", float(request["slo_p99_ms"])


def _load_charts(charts: Any, name: str, what: str, drivers: dict[str, list[dict[str, Any]]],
                 slo: tuple[str, float], chosen: float | None, legend: str) -> list[str]:
    """Latency vs load and throughput vs load for one set of load levels: ``drivers`` is a
    driver's name -> its levels ({rate, latency {pNN: ms}, achieved}); the first driver
    is drawn in full (p50, p95, p99 and the SLO's percentile), the others at the SLO's
    percentile; ``chosen`` (a rate) is marked on the first."""
    percentile, ms = slo
    first, rows = next(iter(drivers.items()))
    load = [r["rate"] for r in rows]
    keys = sorted({"p50", "p95", "p99", percentile}, key=_rank)
    latency = {(f"{first} {q}" if len(drivers) > 1 else q): [r["latency"].get(q) for r in rows]
               for q in keys}
    achieved = {first: [r["achieved"] for r in rows]}
    for other, levels in list(drivers.items())[1:]:
        by_rate = {r["rate"]: r for r in levels}
        latency[f"{other} {percentile}"] = [by_rate.get(x, {}).get("latency", {}).get(percentile)
                                            for x in load]
        achieved[other] = [by_rate.get(x, {}).get("achieved") for x in load]
    at = next((r for r in rows if chosen is not None and r["rate"] == chosen), None)
    lat_point = thr_point = None
    if at is not None and at["latency"].get(percentile) is not None:
        lat_point = charts.Point(at["rate"], at["latency"][percentile],
                                 f"{legend}: {at['rate']:,.1f} queries/s, {percentile} "
                                 f"{at['latency'][percentile]:.3g} ms", legend)
    if at is not None and at["achieved"] is not None:
        thr_point = charts.Point(at["rate"], at["achieved"],
                                 f"{legend}: {at['rate']:,.1f} queries/s offered, "
                                 f"{at['achieved']:,.1f} answered", legend)
    return [charts.latency_vs_load(load, latency, slo_ms=ms, chosen=lat_point, name=name,
                                   slo_label=f"SLO {ms:g} ms ({percentile})",
                                   title=f"{what}: latency vs load"),
            charts.throughput_vs_load(load, achieved, chosen=thr_point,
                                      name=name.replace("latency", "throughput"),
                                      title=f"{what}: throughput vs load")]


def _charts(doc: dict[str, Any]) -> list[str]:
    """The report's figures as inline SVG (report/charts.py, the charts extra), or one
    paragraph with the install line where matplotlib is missing."""
    from oemkit.report import charts

    if not charts.available():
        return [f"<p class=\"note\">The charts need matplotlib: <code>"
                f"{html.escape(charts.CHARTS_HINT)}</code> (the tables above hold every "
                "figure).</p>"]
    slo = _slo(doc)
    rec = doc.get("recommendation") or {}
    out = []
    served = doc.get("served")
    if isinstance(served, dict) and served.get("levels"):
        drivers: dict[str, list[dict[str, Any]]] = {"oemkit": [], "MLPerf LoadGen": []}
        for lv in served["levels"]:
            for key, driver in (("oemkit", "oemkit"), ("mlperf_loadgen", "MLPerf LoadGen")):
                figures = lv.get(key)
                if isinstance(figures, dict):
                    drivers[driver].append({"rate": lv["rate"],
                                            "latency": figures.get("latency_ms") or {},
                                            "achieved": figures.get("achieved_qps")})
        chosen = (rec.get("sustainable_qps_per_instance")
                  if rec.get("achievable") and rec.get("basis") == "served" else None)
        out += _load_charts(charts, "served-latency",
                            "Served (oemkit serve over HTTP, one instance)",
                            {k: v for k, v in drivers.items() if v}, slo, chosen,
                            "operating point")
    server = [p for p in doc["server"] if p.get("rate")]
    if server:
        passing = [p["rate"] for p in server if p.get("meets_slo")]
        legend = "model-only ceiling" if out else "operating point"
        out += _load_charts(charts, "latency", "Model only (in process, Poisson arrivals)",
                            {"in process": [{"rate": p["rate"], "achieved": p.get("achieved_qps"),
                                             "latency": p} for p in server]},
                            slo, max(passing) if passing else None, legend)
    dist = {f"batch {c['batch']}, {c['threads']} thr": [(charts.nines(pct), ms) for pct, ms
                                                         in c["stream"]["distribution"]]
            for c in doc["configurations"]}
    shown = sorted({pct for c in doc["configurations"] for pct, _ in c["stream"]["distribution"]
                    if pct >= 50})  # the lower ones crowd together near 0 nines
    lat_thr: dict[str, list[tuple[float, float | None]]] = {}
    for c in doc["configurations"]:
        lat_thr.setdefault(f"{c['threads']} thread(s)", []).append(
            (c["stream"]["throughput_samples_s"] or 0.0, c["stream"]["p99"]))
    out.append(charts.xy_chart(
        dist, name="distribution", logy=True,
        xticks=[(charts.nines(pct), f"p{pct:g}") for pct in shown],
        title="Latency distribution (single stream, in process)",
        xlabel="percentile (spaced by nines: p90, p99, p99.9 equally apart)",
        ylabel="latency (ms, log scale)"))
    out.append(charts.xy_chart(
        lat_thr, name="batches", logx=True, logy=True,
        notes=[(c["stream"]["throughput_samples_s"] or 0.0, c["stream"]["p99"],
                f"batch {c['batch']}") for c in doc["configurations"]
               if c["stream"]["p99"] is not None],
        title="p99 latency vs throughput, per batch size (in process)",
        xlabel="samples/s (log scale)", ylabel="p99 (ms, log scale)"))
    return out


def to_html(doc: dict[str, Any]) -> str:
    """One HTML file with everything inline: tables, the SVG charts, the YAML snippet."""
    charts = _charts(doc)
    md = to_markdown(doc).split("\n## Kubernetes")[0]  # rendered below as <pre>
    body = []
    in_table = False
    for line in md.splitlines():
        if line.startswith("|"):
            cells = [_inline(c.strip()) for c in line.strip("|").split("|")]
            if set(line) <= {"|", "-"}:
                continue
            if not in_table:
                body.append("<table>")
                in_table = True
                body.append("<tr>" + "".join(f"<th>{c}</th>" for c in cells) + "</tr>")
            else:
                body.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
            continue
        if in_table:
            body.append("</table>")
            in_table = False
        if line.startswith("## "):
            body.append(f"<h2>{_inline(line[3:])}</h2>")
        elif line.startswith("# "):
            body.append(f"<h1>{_inline(line[2:])}</h1>")
        elif line.startswith("- "):
            body.append(f"<p>{_inline(line[2:])}</p>")
    if in_table:
        body.append("</table>")
    return ("<!doctype html><html><head><meta charset=\"utf-8\"><title>oemkit sizing</title>"
            "<style>body{font-family:sans-serif;max-width:1000px;margin:2em auto}"
            "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 6px;"
            "font-size:13px}svg{margin:1em 0;display:block;max-width:100%;height:auto}"
            "code{background:#f3f3f3;padding:0 3px}.note{color:#8a5a00}</style></head><body>"
            + "\n".join(body) + "<h2>Charts</h2>" + "\n".join(charts)
            + "<h2>Kubernetes</h2><pre>" + html.escape(k8s_snippet(doc)) + "</pre>"
            "</body></html>\n")


def _figure(value: Any) -> float | None:
    """A measured figure: a finite number, else None (shown as "-")."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _invalid(what: str) -> InputError:
    return InputError("E_SIZING_INVALID", f"a sizing report's {what}",
                      hint="pass two sizing.json files written by 'oemkit sizing'")


def _configurations(doc: Any) -> list[dict[str, Any]]:
    found = doc.get("configurations") if isinstance(doc, dict) else None
    if not isinstance(found, list):
        raise _invalid("configurations is not a list")
    for c in found:
        if not (isinstance(c, dict) and isinstance(c.get("stream"), dict)
                and all(isinstance(c.get(k), int) and not isinstance(c.get(k), bool)
                        for k in ("batch", "threads"))):
            raise _invalid("configurations hold an entry without integer batch and threads "
                           "and a stream object")
    return found


def compare(a: dict[str, Any], b: dict[str, Any]) -> list[dict[str, Any]]:
    """Figure-by-figure comparison of two sizing documents, with the ratio B/A.

    The documents are files the user passes: their shape is checked (E_SIZING_INVALID)
    and any figure that is not a finite number counts as missing."""
    rows: list[dict[str, Any]] = []

    def add(label: str, x: Any, y: Any, higher_is_better: bool) -> None:
        x, y = _figure(x), _figure(y)
        ratio = (y / x) if x and y is not None else None
        worse = None if ratio is None else (ratio < 1 if higher_is_better else ratio > 1)
        rows.append({"figure": label, "a": x, "b": y, "ratio": ratio, "worse": worse,
                     "higher_is_better": higher_is_better})

    def key(c: dict[str, Any]) -> tuple[int, int]:
        return c["batch"], c["threads"]

    bmap = {key(c): c for c in _configurations(b)}
    for c in _configurations(a):
        other = bmap.get(key(c))
        if other is None:
            continue
        tag = f"batch {c['batch']}, {c['threads']} thr"
        add(f"{tag} p50 ms", c["stream"].get("p50"), other["stream"].get("p50"), False)
        add(f"{tag} p99 ms", c["stream"].get("p99"), other["stream"].get("p99"), False)
        add(f"{tag} samples/s", c["stream"].get("throughput_samples_s"),
            other["stream"].get("throughput_samples_s"), True)
        add(f"{tag} peak RSS MB", c.get("peak_rss_mb"), other.get("peak_rss_mb"), False)
    ra, rb = a.get("recommendation"), b.get("recommendation")
    ra, rb = (ra if isinstance(ra, dict) else {}), (rb if isinstance(rb, dict) else {})
    served = ra.get("basis") == rb.get("basis") == "served"
    add("sustainable QPS per instance" + (" (served)" if served else ""),
        ra.get("sustainable_qps_per_instance") if ra.get("basis") == rb.get("basis") else None,
        rb.get("sustainable_qps_per_instance"), True)
    add("served peak RSS MB per instance", ra.get("memory_mb_per_instance") if served else None,
        rb.get("memory_mb_per_instance"), False)
    ca, cb = a.get("ceiling"), b.get("ceiling")
    ca, cb = (ca if isinstance(ca, dict) else {}), (cb if isinstance(cb, dict) else {})
    add("model-only ceiling QPS", ca.get("sustainable_qps_per_instance"),
        cb.get("sustainable_qps_per_instance"), True)
    return rows
