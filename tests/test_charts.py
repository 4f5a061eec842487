"""The sizing report's charts (issue 15, "Also found"): matplotlib SVG with numbers on both
axes, a log latency axis, the SLO line and the operating point where their values say, no
external reference; the HTML page renders in headless Chromium, not blank, asking nothing
of any network; without matplotlib the page says how to get the charts and keeps the tables.
"""

from __future__ import annotations

import dataclasses
import http.server
import json
import math
import re
import shutil
import subprocess
import sys
import threading
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from oemkit.measure.sizing import SizingRequest, run_sizing
from oemkit.report import charts
from oemkit.report.sizing import to_html

#: The sizing fixture drives `oemkit serve` over loopback where sizing measures the service.
pytestmark = [pytest.mark.enable_socket, pytest.mark.allow_hosts(["127.0.0.1"])]
SVG = "{http://www.w3.org/2000/svg}"
XLINK = "{http://www.w3.org/1999/xlink}"
NUMBER = re.compile(r"-?[\d,]*\.?\d+")
LOAD = [100.0, 200.0, 400.0, 600.0, 800.0]
P50 = [0.010, 0.011, 0.012, 0.020, 0.5]
P99 = [0.020, 0.030, 0.050, 0.4, 80.0]
CHOSEN = charts.Point(600.0, 0.4, "chosen: 600 queries/s, p99 0.4 ms")


def _latency() -> str:
    return charts.latency_vs_load(LOAD, {"p50": P50, "p99": P99}, slo_ms=50.0,
                                  slo_label="SLO 50 ms (p99)", chosen=CHOSEN)


def _by_id(root: ET.Element, gid: str) -> ET.Element:
    found = [e for e in root.iter() if e.get("id") == gid]
    assert len(found) == 1, f"{gid}: {len(found)} elements"
    return found[0]


def _ticks(root: ET.Element, name: str, axis: str) -> list[tuple[float, float]]:
    """(value, pixel position) of each labelled major tick: the number in the tick's
    <text>, and the x (x axis) or y (y axis) of its tick mark."""
    out = []
    for group in root.iter(f"{SVG}g"):
        if not re.fullmatch(rf"{name}-{axis}tick_\d+", group.get("id", "")):
            continue
        label = "".join(t.text or "" for t in group.iter(f"{SVG}text")).strip()
        if not label:
            continue  # a minor tick
        assert NUMBER.fullmatch(label), f"{axis} tick label {label!r} is not a plain number"
        mark = next(group.iter(f"{SVG}use"))
        out.append((float(label.replace(",", "")), float(mark.get(axis) or "nan")))
    return out


def _fit(ticks: list[tuple[float, float]], log: bool) -> tuple[float, float]:
    """Pixel = a + b * f(value), f = log10 or identity, from the first and last tick."""
    f = math.log10 if log else (lambda v: v)
    (v0, p0), (v1, p1) = ticks[0], ticks[-1]
    b = (p1 - p0) / (f(v1) - f(v0))
    return p0 - b * f(v0), b


def test_latency_chart_has_numbers_on_both_axes_and_a_log_latency_axis():
    root = ET.fromstring(_latency())
    xs, ys = _ticks(root, "latency", "x"), _ticks(root, "latency", "y")
    assert len(xs) >= 4 and len(ys) >= 6
    # The y tick labels sit where a log axis puts them, and not where a linear one would.
    a, b = _fit(ys, log=True)
    for value, pixel in ys:
        assert pixel == pytest.approx(a + b * math.log10(value), abs=0.5), (value, pixel)
    la, lb = _fit(ys, log=False)
    assert any(abs(pixel - (la + lb * value)) > 20 for value, pixel in ys)
    # The labels bracket everything drawn: the fastest p50 and the SLO above the slowest p99.
    values = [v for v, _ in ys]
    assert min(values) <= min(P50) and max(values) >= max(P99)
    a, b = _fit(xs, log=False)
    for value, pixel in xs:
        assert pixel == pytest.approx(a + b * value, abs=0.5)


def test_the_slo_line_and_the_operating_point_are_drawn_at_their_values():
    svg = _latency()
    root = ET.fromstring(svg)
    ya, yb = _fit(_ticks(root, "latency", "y"), log=True)
    xa, xb = _fit(_ticks(root, "latency", "x"), log=False)
    slo = next(_by_id(root, "latency-slo").iter(f"{SVG}path"))
    heights = {float(y) for y in re.findall(r"[ML] [\d.]+ ([\d.]+)", slo.get("d", ""))}
    assert len(heights) == 1 and heights.pop() == pytest.approx(ya + yb * math.log10(50.0),
                                                                abs=0.5)
    star = next(_by_id(root, "latency-operating-point").iter(f"{SVG}use"))
    assert float(star.get("x") or "nan") == pytest.approx(xa + xb * CHOSEN.x, abs=0.5)
    assert float(star.get("y") or "nan") == pytest.approx(ya + yb * math.log10(CHOSEN.y),
                                                          abs=0.5)
    texts = {"".join(t.itertext()).strip() for t in root.iter(f"{SVG}text")}
    assert {"SLO 50 ms (p99)", CHOSEN.label, "operating point", "p50", "p99"} <= texts


def test_throughput_chart_has_numbers_the_diagonal_and_the_operating_point():
    svg = charts.throughput_vs_load(LOAD, {"achieved": [100.0, 199.0, 398.0, 590.0, 700.0]},
                                    chosen=charts.Point(600.0, 590.0, "chosen: 600 queries/s"))
    root = ET.fromstring(svg)
    assert len(_ticks(root, "throughput", "x")) >= 4
    assert len(_ticks(root, "throughput", "y")) >= 4
    _by_id(root, "throughput-diagonal")
    _by_id(root, "throughput-operating-point")
    assert "chosen: 600 queries/s" in {"".join(t.itertext()) for t in root.iter(f"{SVG}text")}


def _external_references(svg: str) -> list[str]:
    """Anything that would make a browser fetch: URLs outside the namespace declarations,
    url(...) and href that are not #fragments, embedded fonts and images."""
    body = re.sub(r'\sxmlns(:\w+)?="[^"]*"', "", svg)
    found = re.findall(r"https?:[^\s\"')]*", body)
    found += re.findall(r"url\((?!#)[^)]*\)", body)
    found += re.findall(r'href="(?!#)[^"]*"', body)
    found += re.findall(r"@import|@font-face|<image\b|<script\b", body)
    return found


def test_svg_is_self_contained_deterministic_and_its_ids_are_its_own():
    svg = _latency()
    assert svg.startswith("<svg") and "<?xml" not in svg and "DOCTYPE" not in svg
    assert _external_references(svg) == []
    assert _external_references(svg + '<image href="https://example.com/x.png"/>')  # bites
    assert "<text" in svg and "sans-serif" in svg  # text, not embedded glyph outlines
    assert not re.search(r"<dc:date>|\b20\d\d-\d\d-\d\d", svg)
    assert _latency() == svg
    other = charts.throughput_vs_load(LOAD, {"achieved": LOAD})
    ids = [re.findall(r'\bid="([^"]+)"', s) for s in (svg, other)]
    assert all(i.startswith("latency-") for i in ids[0])
    assert not set(ids[0]) & set(ids[1])
    refs = re.findall(r'(?:xlink:href="#|url\(#)([^")]+)', svg)
    assert refs and set(refs) <= set(ids[0])


def test_no_data_is_a_chart_that_says_so():
    svg = charts.latency_vs_load([], {"p99": []}, slo_ms=10.0)
    assert "no data" in svg and _external_references(svg) == []


@pytest.fixture(scope="module")
def sized_doc(tmp_path_factory, keys, trust_v2):
    from helpers import EXAMPLE
    from oemkit.release.bundle import build_bundle
    from oemkit.release.sign import sign_bundle

    bundle = build_bundle(EXAMPLE, tmp_path_factory.mktemp("charts")).path
    sign_bundle(bundle, [keys["bundle"]])
    # A generous SLO (p95 2 s: a busy shared host must still find an operating point, the
    # charts are what is tested here, not the host); short runs.
    from oemkit.measure.sizing import Slo

    wanted = {"target_qps": 500, "slo": Slo("p95", 2000.0), "batches": (1, 4),
              "threads": (1,), "duration_s": 0.3,
              "server_duration_s": 0.2, "levels": (0.5, 1.0), "level_duration_s": 0.3,
              "mlperf": "off"}
    have = {f.name for f in dataclasses.fields(SizingRequest)}
    request = SizingRequest(**{k: v for k, v in wanted.items() if k in have})
    doc = run_sizing(bundle, "cpu-small", trust_v2, request)
    assert doc["recommendation"]["achievable"], doc["recommendation"]
    return doc


def _served(doc) -> bool:
    return bool(isinstance(doc.get("served"), dict) and doc["served"].get("levels"))


def test_report_page_has_the_charts_and_no_markdown_leaks(sized_doc):
    page = to_html(sized_doc)
    names = ["latency", "throughput", "distribution", "batches"]
    names += ["served-latency", "served-throughput"] if _served(sized_doc) else []
    assert page.count("<svg") == len(names)
    for name in names:
        assert f'id="{name}-axes"' in page
    first = "served-" if _served(sized_doc) else ""
    assert f'id="{first}latency-slo"' in page
    assert f'id="{first}latency-operating-point"' in page
    assert f'id="{first}throughput-operating-point"' in page
    assert "`" not in page and "**" not in page
    assert f"<code>{sized_doc['manifest_sha256']}</code>" in page
    assert f"<strong>{sized_doc['recommendation']['instances']}</strong>" in page
    assert _external_references(page) == []
    assert "<script" not in page


def test_served_levels_are_drawn_first_with_each_drivers_series(sized_doc):
    """A report with served figures (issue 15 step 5's ``served.levels``, here made from the
    in-process points) gets the served charts first, both drivers in them, and the
    recommendation's rate marked as the operating point."""
    doc = json.loads(json.dumps(sized_doc))
    rows = [p for p in doc["server"] if p.get("rate")]
    chosen = rows[0]["rate"]
    doc["served"] = {"levels": [
        {"rate": p["rate"], "meets_slo": p["rate"] == chosen,
         "oemkit": {"achieved_qps": p["achieved_qps"],
                    "latency_ms": {k: p[k] for k in ("p50", "p95", "p99")}},
         "mlperf_loadgen": {"achieved_qps": p["achieved_qps"] * 0.9,
                            "latency_ms": {k: p[k] * 1.1 for k in ("p50", "p95", "p99")}}}
        for p in rows]}
    doc["recommendation"].update(basis="served", achievable=True,
                                 sustainable_qps_per_instance=chosen)
    page = to_html(doc)
    assert page.index('id="served-latency-axes"') < page.index('id="latency-axes"')
    served = page[page.index('id="served-latency-axes"'):page.index('id="latency-axes"')]
    for words in ("oemkit p50", "MLPerf LoadGen p", "operating point", f"{chosen:,.1f}"):
        assert words in served, words
    assert 'id="served-latency-operating-point"' in page
    assert "model-only ceiling" in page[page.index('id="latency-axes"'):]


def test_without_matplotlib_the_page_names_the_extra_and_keeps_the_tables(sized_doc,
                                                                        monkeypatch):
    tables = re.findall(r"<table>.*?</table>", to_html(sized_doc), re.DOTALL)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib: ImportError
    assert not charts.available()
    page = to_html(sized_doc)
    assert "<svg" not in page
    assert charts.CHARTS_HINT in page.replace("&#x27;", "'")
    assert len(tables) >= 2 and re.findall(r"<table>.*?</table>", page, re.DOTALL) == tables
    assert "<h2>Recommendation" in page


# ---- headless Chromium: the page as a browser draws it -----------------------------------

CHROMIUM = shutil.which("chromium")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium binary on PATH (.ci/run installs Debian's chromium "
    "with apt-get; install it to run the browser checks)")


class _Quiet(http.server.SimpleHTTPRequestHandler):
    """Serves one folder and records every request path."""

    requests: list[str]

    def log_message(self, format: str, *args: object) -> None:
        self.requests.append(self.path)


def _browse(folder: Path, page: str, tmp_path: Path) -> tuple[Path, list[str], list[str]]:
    """Chromium, headless, opens http://127.0.0.1:PORT/page with every other host name
    unresolvable; returns the screenshot, the server's request paths, and the URLs the
    page's own context asked for (from Chromium's net log)."""
    requests: list[str] = []
    handler = type("Handler", (_Quiet,), {"requests": requests})

    def make(*args: object) -> http.server.BaseHTTPRequestHandler:
        return handler(*args, directory=str(folder))

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), make)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    origin = f"http://127.0.0.1:{server.server_address[1]}"
    shot, netlog = tmp_path / "page.png", tmp_path / "netlog.json"
    try:
        subprocess.run(
            [str(CHROMIUM), "--headless", "--disable-gpu", "--no-sandbox", "--no-first-run",
             f"--user-data-dir={tmp_path / 'profile'}", "--disable-background-networking",
             "--disable-component-update", "--disable-sync",
             "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
             f"--log-net-log={netlog}", f"--screenshot={shot}", "--window-size=1200,2000",
             f"{origin}/{page}"], capture_output=True, timeout=120, check=True)
    finally:
        server.shutdown()
        server.server_close()
    text = netlog.read_text(encoding="utf-8").rstrip().rstrip(",")
    log = json.loads(text if text.endswith("}") else text + "]}")
    start = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    # The page's own requests carry its site in their network isolation key; the
    # browser's background requests (time, accounts) do not.
    asked = [e["params"]["url"] for e in log["events"] if e["type"] == start
             and "127.0.0.1" in e.get("params", {}).get("network_isolation_key", "")]
    assert f"{origin}/{page}" in asked, asked
    return shot, requests, [u for u in asked if u != f"{origin}/{page}"]


def _pixels(shot: Path) -> tuple[int, float, set[tuple[int, int, int]]]:
    """Distinct colours, the share of pixels that are not white, and the colours."""
    from PIL import Image

    image = Image.open(shot).convert("RGB")
    colours = image.getcolors(maxcolors=1 << 24) or []
    total = image.width * image.height
    white = sum(n for n, c in colours if c == (255, 255, 255))
    return len(colours), 1 - white / total, {c for _, c in colours}


@needs_chromium
@pytest.mark.enable_socket
@pytest.mark.allow_hosts(["127.0.0.1"])
def test_chromium_draws_the_page_and_it_asks_no_network(sized_doc, tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "sizing.html").write_text(to_html(sized_doc), encoding="utf-8")
    shot, served, asked = _browse(site, "sizing.html", tmp_path)
    # Besides the page, the browser asks its own origin for a favicon; nothing else.
    assert [u for u in asked if not u.endswith("/favicon.ico")] == []
    assert set(served) <= {"/sizing.html", "/favicon.ico"}, served
    count, ink, colours = _pixels(shot)
    assert count >= 200 and ink >= 0.05, (count, ink)
    hex_rgb = [tuple(int(h[i:i + 2], 16) for i in (1, 3, 5))
               for h in (charts.COLOURS[0], charts.SLO_COLOUR, "#ffd700")]
    missing = [c for c in hex_rgb if c not in colours]
    assert not missing, f"the first series, the SLO line or the star not on screen: {missing}"


@needs_chromium
@pytest.mark.enable_socket
@pytest.mark.allow_hosts(["127.0.0.1"])
def test_the_browser_check_sees_an_external_request_and_a_blank_page(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "bad.html").write_text('<!doctype html><html><body><img src="https://cdn.example.'
                                   'com/chart.png"></body></html>', encoding="utf-8")
    shot, _served, asked = _browse(site, "bad.html", tmp_path)
    assert "https://cdn.example.com/chart.png" in asked
    count, ink, _ = _pixels(shot)
    assert count < 200 or ink < 0.05
