"""The sizing report's charts: matplotlib figures as inline SVG strings (the ``charts`` extra).

The functions take plain numbers (x values, named series, the SLO, the chosen operating
point), so any sizing figures can feed them: the in-process server scenario or the served
levels. The SVG is meant to sit inside one self-contained HTML file opened offline:

- no XML prolog, DOCTYPE or RDF metadata; the text stays ``<text>`` (``svg.fonttype:
  'none'``) in a generic sans-serif family, so no font is embedded or fetched and the only
  URLs are the SVG and XLink namespaces; ``url(#...)`` references are to the SVG's own clip
  paths;
- deterministic: no date and a fixed ``svg.hashsalt``, so the same figures give the same
  bytes; every id (and every reference to one) is prefixed with the chart's ``name``, so
  two charts on one page never share an id;
- latency axes are logarithmic with 1-2-5 tick labels in plain numbers (an SLO of 50 ms
  and a p99 of 0.02 ms fit on one chart), legends sit below the plot, not over it.

matplotlib is imported inside the functions (through its object API, no pyplot: no GUI
backend is ever selected, nothing global changes); :func:`available` says whether it is
installed, and the HTML report shows :data:`CHARTS_HINT` instead of the charts without it.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

#: The extra's name in pyproject.toml and the install line the HTML report shows without it.
CHARTS_EXTRA = "charts"
CHARTS_HINT = "pip install 'oemkit[charts]'"

#: Series colours (matplotlib's default cycle, fixed here so the output never depends on
#: the user's matplotlibrc), then the SLO's and the operating point's.
COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")
SLO_COLOUR = "#d62728"
POINT_COLOUR = "#000000"

#: RDF metadata off (it carries matplotlib's URL), and no date.
_METADATA = {"Date": None, "Creator": None, "Format": None, "Type": None}


@dataclass(frozen=True)
class Point:
    """A marked point (the chosen operating point): ``label`` is shown next to it,
    ``legend`` names it in the legend."""

    x: float
    y: float
    label: str
    legend: str = "operating point"


def available() -> bool:
    """Whether matplotlib (the ``charts`` extra) can be imported."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def number(value: float) -> str:
    """A tick label in plain figures: ``0.02``, ``1.5``, ``250``, ``12,000``."""
    if value == 0 or not math.isfinite(value):
        return "0" if value == 0 else ""
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def latency_vs_load(load: Sequence[float], series: Mapping[str, Sequence[float | None]], *,
                    slo_ms: float | None = None, slo_label: str = "SLO",
                    chosen: Point | None = None, name: str = "latency",
                    title: str = "Latency vs load",
                    xlabel: str = "offered load (queries/s)",
                    ylabel: str = "latency (ms, log scale)") -> str:
    """Latency percentiles (``series``: name -> one value per ``load``, None = missing)
    against the load, on a log latency axis, with the SLO line and the chosen point."""
    return _render(name, title, xlabel, ylabel,
                   {k: list(zip(load, v, strict=True)) for k, v in series.items()},
                   logy=True, hline=slo_ms, hline_label=slo_label, chosen=chosen)


def throughput_vs_load(load: Sequence[float], series: Mapping[str, Sequence[float | None]], *,
                       chosen: Point | None = None, name: str = "throughput",
                       title: str = "Throughput vs load",
                       xlabel: str = "offered load (queries/s)",
                       ylabel: str = "achieved throughput (queries/s)") -> str:
    """Achieved throughput (``series``: name -> one value per ``load``) against the offered
    load, with the line where the two are equal and the chosen point."""
    return _render(name, title, xlabel, ylabel,
                   {k: list(zip(load, v, strict=True)) for k, v in series.items()},
                   diagonal="achieved = offered", chosen=chosen)


def xy_chart(series: Mapping[str, Sequence[tuple[float, float | None]]], *, name: str,
             title: str, xlabel: str, ylabel: str, logx: bool = False, logy: bool = False,
             hline: float | None = None, hline_label: str = "",
             chosen: Point | None = None,
             xticks: Sequence[tuple[float, str]] | None = None,
             notes: Sequence[tuple[float, float, str]] = ()) -> str:
    """Any other line chart: ``series`` is name -> (x, y) points, each series its own x;
    ``xticks`` (position, label) replaces the x axis's numbers (e.g. percentiles drawn at
    their "nines"); ``notes`` (x, y, text) are small labels next to points."""
    return _render(name, title, xlabel, ylabel, {k: list(v) for k, v in series.items()},
                   logx=logx, logy=logy, hline=hline, hline_label=hline_label, chosen=chosen,
                   xticks=xticks, notes=notes)


def nines(percentile: float) -> float:
    """Where a percentile sits on a "nines" axis: p90 at 1, p99 at 2, p99.9 at 3, so a
    latency distribution's tail gets as much room as its body."""
    return -math.log10(1 - min(percentile, 99.9999) / 100)


def _render(name: str, title: str, xlabel: str, ylabel: str,
            series: Mapping[str, list[tuple[float, float | None]]], *, logx: bool = False,
            logy: bool = False, hline: float | None = None, hline_label: str = "",
            diagonal: str | None = None, chosen: Point | None = None,
            xticks: Sequence[tuple[float, str]] | None = None,
            notes: Sequence[tuple[float, float, str]] = ()) -> str:
    import matplotlib
    from matplotlib import ticker
    from matplotlib.figure import Figure

    def usable(x: float, y: float | None) -> bool:
        return (y is not None and math.isfinite(x) and math.isfinite(y)
                and (x > 0 or not logx) and (y > 0 or not logy))

    clean: dict[str, list[tuple[float, float]]] = {}
    for label, given in series.items():
        kept = sorted((x, y) for x, y in given if y is not None and usable(x, y))
        if kept:
            clean[label] = kept
    with matplotlib.rc_context({
            "svg.fonttype": "none", "svg.hashsalt": "oemkit", "font.family": "sans-serif",
            "font.sans-serif": ["DejaVu Sans", "Liberation Sans", "Arial", "Helvetica"],
            "font.size": 10.0, "axes.titlesize": 12.0, "axes.grid": True, "grid.alpha": 0.35}):
        fig = Figure(figsize=(7.5, 4.4), layout="constrained")
        ax = fig.add_subplot()
        ax.set_gid(f"{name}-axes")
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        if not clean:
            ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center", va="center")
            ax.set_xticks([])
            ax.set_yticks([])
            return _svg(fig, name)
        for i, (label, pts) in enumerate(clean.items()):
            ax.plot([x for x, _ in pts], [y for _, y in pts], marker="o", markersize=4,
                    linewidth=1.8, color=COLOURS[i % len(COLOURS)], label=label,
                    gid=f"{name}-series-{i + 1}")
        for x, y, text in notes:
            if usable(x, y):
                ax.annotate(text, (x, y), xytext=(4, 4), textcoords="offset points",
                            fontsize=8, color="#333333")
        xs = [x for pts in clean.values() for x, _ in pts]
        ys = [y for pts in clean.values() for _, y in pts]
        if diagonal is not None:
            span = [min(xs + ys), max(xs + ys)]
            ax.plot(span, span, linestyle=":", color="#555555", linewidth=1.2,
                    label=diagonal, gid=f"{name}-diagonal")
        if hline is not None and (hline > 0 or not logy):
            ys.append(hline)
            ax.axhline(hline, linestyle="--", color=SLO_COLOUR, linewidth=1.5,
                       label=hline_label or f"{hline:g}", gid=f"{name}-slo")
            ax.annotate(hline_label or f"{hline:g}", (0.01, hline),
                        xycoords=("axes fraction", "data"), xytext=(0, 3),
                        textcoords="offset points", color=SLO_COLOUR, va="bottom",
                        gid=f"{name}-slo-label")
        if chosen is not None and usable(chosen.x, chosen.y):
            ax.plot([chosen.x], [chosen.y], linestyle="none", marker="*", markersize=15,
                    markerfacecolor="#ffd700", markeredgecolor=POINT_COLOUR,
                    label=chosen.legend, gid=f"{name}-operating-point", zorder=5)
            right = chosen.x > (min(xs) + max(xs)) / 2
            ax.annotate(chosen.label, (chosen.x, chosen.y), xytext=(-10 if right else 10, 12),
                        textcoords="offset points", ha="right" if right else "left",
                        fontsize=9, gid=f"{name}-operating-point-label",
                        bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "#999999"},
                        arrowprops={"arrowstyle": "-", "color": "#666666"})
        _axis(ax, "x", logx, xs)
        _axis(ax, "y", logy, ys)
        if xticks:
            ax.set_xticks([x for x, _ in xticks], [label for _, label in xticks])
            ax.xaxis.set_minor_locator(ticker.NullLocator())
        fig.legend(loc="outside lower center", ncols=min(4, len(ax.get_lines())),
                   frameon=False)
        return _svg(fig, name)


def _axis(ax: Axes, which: str, log: bool, values: Sequence[float]) -> None:
    """Plain-number tick labels on both axes; log axes at 1, 2 and 5 per decade (more within
    one decade, fewer over four), with the limits widened to ticks that bracket every
    value."""
    from matplotlib import ticker

    axis = ax.xaxis if which == "x" else ax.yaxis
    if log:
        (ax.set_xscale if which == "x" else ax.set_yscale)("log")
        low, high = min(values), max(values)
        decades = math.log10(high / low)
        subs = ((1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0) if decades < 1.2
                else (1.0, 2.0, 5.0) if decades < 4 else (1.0,))
        axis.set_major_locator(ticker.LogLocator(base=10, subs=subs, numticks=30))
        axis.set_minor_locator(ticker.LogLocator(base=10, subs="auto", numticks=30))
        axis.set_minor_formatter(ticker.NullFormatter())
        steps = [m * 10.0 ** e for e in range(math.floor(math.log10(low)) - 1,
                                                math.ceil(math.log10(high)) + 2) for m in subs]
        below = max(s for s in steps if s <= low * 0.999)
        above = min(s for s in steps if s >= high * 1.001)
        (ax.set_xlim if which == "x" else ax.set_ylim)(below, above)
    else:
        axis.set_major_locator(ticker.MaxNLocator(nbins=7, steps=[1, 2, 2.5, 5, 10],
                                                  min_n_ticks=3))
    axis.set_major_formatter(ticker.FuncFormatter(lambda v, _pos: number(v)))


_PROLOG = re.compile(r"\A.*?(?=<svg\b)", re.DOTALL)
#: An id, or a reference to one (``xlink:href="#id"``, ``url(#id)``), in matplotlib's SVG.
_IDS = re.compile(r'(\bid="|xlink:href="#|url\(#)([^")]+)')


def _svg(fig: Figure, name: str) -> str:
    """The figure as an ``<svg>`` element: no prolog, no DOCTYPE, no metadata, no date;
    ids scoped by ``name`` (matplotlib numbers its groups ``figure_1``, ``axes_1``, ... in
    every figure)."""
    out = io.StringIO()
    fig.savefig(out, format="svg", metadata=_METADATA)
    text = _PROLOG.sub("", out.getvalue(), count=1).strip()
    prefix = f"{name}-"
    return _IDS.sub(lambda m: m.group(1) + (m.group(2) if m.group(2).startswith(prefix)
                                            else prefix + m.group(2)), text)
