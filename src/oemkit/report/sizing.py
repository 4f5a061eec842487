"""Sizing reports: Markdown, self-contained HTML with inline SVG charts (no network, no
CDN: it works from a USB stick), a Kubernetes resources snippet, and comparisons."""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from typing import Any

from oemkit.errors import InputError


def k8s_snippet(doc: dict[str, Any]) -> str:
    """Requests/limits and replicas for one Deployment of the bundle."""
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


def to_markdown(doc: dict[str, Any]) -> str:
    rec = doc.get("recommendation", {})
    host = doc["host"]
    lines = [f"# Sizing: {doc.get('name')} {doc.get('version')}", "",
             f"- bundle manifest sha256: `{doc.get('manifest_sha256')}`",
             f"- host: {host['cpu_model']} ({host['arch']}), {host['cores']} cores, "
             f"{host['memory_mb']} MB, onnxruntime {host['onnxruntime']}, providers "
             f"{', '.join(host['providers'])}",
             f"- profile: {doc['profile']['name']}; oemkit {doc['oemkit_version']}",
             f"- complete: {'yes' if doc['complete'] else 'NO (interrupted)'}", "",
             "## Single stream, per batch size and thread count", "",
             "| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    lines += ["| " + " | ".join(r) + " |" for r in _rows(doc)]
    lines += ["", f"## Server scenario (Poisson arrivals, one instance, SLO p99 <= "
              f"{doc['request']['slo_p99_ms']:g} ms)", "",
              "| offered QPS | achieved QPS | p50 ms | p99 ms | meets SLO |",
              "|---|---|---|---|---|"]
    for p in doc["server"]:
        lines.append(f"| {p['rate']:.1f} | {p['achieved_qps']:.1f} | {p['p50']:.3f} | "
                     f"{p['p99']:.3f} | {'yes' if p.get('meets_slo') else 'no'} |")
    lines += ["", "## Recommendation", ""]
    if rec.get("achievable"):
        lines.append(f"- sustainable QPS per instance: {rec['sustainable_qps_per_instance']:.1f}")
        if "instances" in rec:
            lines.append(f"- instances: **{rec['instances']}** = {rec['arithmetic']}")
        lines.append(f"- per instance: {rec['cores_per_instance']} core(s), "
                     f"{rec['memory_mb_per_instance']} MB peak RSS")
    else:
        lines.append(f"- {rec.get('reason')}")
    if doc["notes"]:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in doc["notes"]]
    lines += ["", "## Kubernetes", "", "```yaml", k8s_snippet(doc).rstrip(), "```", ""]
    return "\n".join(lines)


def _svg_chart(title: str, series: Sequence[tuple[str, Sequence[tuple[float, float]]]],
               xlabel: str, ylabel: str, hline: float | None = None,
               logx: bool = False) -> str:
    """A small line/point chart as inline SVG."""
    width, height, pad = 560, 300, 50
    points = [pt for _, pts in series for pt in pts]
    if not points:
        return f"<p>{html.escape(title)}: no data</p>"

    def fx(x: float) -> float:
        return math.log10(max(x, 1e-9)) if logx else x

    xs = [fx(x) for x, _ in points]
    ys = [y for _, y in points] + ([hline] if hline is not None else [])
    x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    y1 = max(ys) * 1.1 if max(ys) > 0 else 1.0

    def px(x: float) -> float:
        return pad + (fx(x) - x0) / (x1 - x0) * (width - 2 * pad)

    def py(y: float) -> float:
        return height - pad - y / y1 * (height - 2 * pad)

    colours = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e"]
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'role="img" aria-label="{html.escape(title)}">',
             f'<text x="{width / 2}" y="18" text-anchor="middle" font-size="14">'
             f'{html.escape(title)}</text>',
             f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" '
             'stroke="#333"/>',
             f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{height - pad}" stroke="#333"/>',
             f'<text x="{width / 2}" y="{height - 12}" text-anchor="middle" font-size="12">'
             f'{html.escape(xlabel)}</text>',
             f'<text x="14" y="{height / 2}" font-size="12" transform="rotate(-90 14 '
             f'{height / 2})" text-anchor="middle">{html.escape(ylabel)}</text>',
             f'<text x="{pad - 4}" y="{py(y1 / 1.1) + 4}" text-anchor="end" '
             f'font-size="10">{y1 / 1.1:.3g}</text>',
             f'<text x="{pad - 4}" y="{height - pad + 4}" text-anchor="end" '
             'font-size="10">0</text>']
    if hline is not None:
        parts.append(f'<line x1="{pad}" y1="{py(hline)}" x2="{width - pad}" y2="{py(hline)}" '
                     'stroke="#d62728" stroke-dasharray="6 4"/>')
        parts.append(f'<text x="{width - pad}" y="{py(hline) - 4}" text-anchor="end" '
                     f'font-size="11" fill="#d62728">SLO {hline:g}</text>')
    for i, (label, pts) in enumerate(series):
        colour = colours[i % len(colours)]
        coords = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in sorted(pts))
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" '
                     f'points="{coords}"/>')
        for x, y in pts:
            parts.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3" fill="{colour}">'
                         f'<title>{html.escape(label)}: {x:.4g}, {y:.4g}</title></circle>')
        parts.append(f'<text x="{width - pad + 4}" y="{pad + 14 * i}" font-size="11" '
                     f'fill="{colour}">{html.escape(label)}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def to_html(doc: dict[str, Any]) -> str:
    """One HTML file with everything inline: tables, three SVG charts, the YAML snippet."""
    dist = [(f"batch {c['batch']}, {c['threads']} thr",
             [(p, v) for p, v in c["stream"]["distribution"]]) for c in doc["configurations"]]
    lat_thr: dict[str, list[tuple[float, float]]] = {}
    for c in doc["configurations"]:
        lat_thr.setdefault(f"{c['threads']} thread(s)", []).append(
            (c["stream"]["throughput_samples_s"], c["stream"]["p99"]))
    server = [("p99 under Poisson load", [(p["rate"], p["p99"]) for p in doc["server"]])]
    charts = [
        _svg_chart("Latency distribution (single stream)", dist, "percentile", "ms"),
        _svg_chart("p99 latency vs throughput, per batch size", list(lat_thr.items()),
                   "samples/s", "p99 ms", logx=True),
        _svg_chart("Server scenario: one instance", server, "offered queries/s", "p99 ms",
                   hline=doc["request"]["slo_p99_ms"]),
    ]
    md = to_markdown(doc).split("\n## Kubernetes")[0]  # rendered below as <pre>
    body = []
    in_table = False
    for line in md.splitlines():
        if line.startswith("|"):
            cells = [html.escape(c.strip()) for c in line.strip("|").split("|")]
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
            body.append(f"<h2>{html.escape(line[3:])}</h2>")
        elif line.startswith("# "):
            body.append(f"<h1>{html.escape(line[2:])}</h1>")
        elif line.startswith("- "):
            body.append(f"<p>{html.escape(line[2:]).replace('**', '')}</p>")
    if in_table:
        body.append("</table>")
    return ("<!doctype html><html><head><meta charset=\"utf-8\"><title>oemkit sizing</title>"
            "<style>body{font-family:sans-serif;max-width:1000px;margin:2em auto}"
            "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 6px;"
            "font-size:13px}svg{margin:1em 0;display:block}</style></head><body>"
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
    add("sustainable QPS per instance", ra.get("sustainable_qps_per_instance"),
        rb.get("sustainable_qps_per_instance"), True)
    return rows
