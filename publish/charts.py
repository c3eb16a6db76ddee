"""The bulletin's charts: matplotlib ``Figure``s (never pyplot), deterministic bytes.

Every chart carries the SDG 10.c target lines that apply to what it shows, dashed: 3% (the
global average target) on every chart, and 5% (no corridor above it) only on charts of
corridors (``per_corridor=True``): the 5% rule is about each corridor, not about a firm type,
a region, a sending country or the global SmaRT. The lines have SVG ids ``target-3`` and
``target-5`` so a reader — or a test — can find them.

No text overlaps another at any data size: the title is the figure's (``suptitle``) and the
subtitle the axes' title, so the constrained layout stacks them; legends sit below the plot,
outside it, where they hide no bar, point or value label; tick labels are thinned when there
are more than fit. ``text_boxes`` gives every drawn text's extent, for checks.

The same data gives the same PNG and SVG bytes: Agg, a fixed ``svg.hashsalt``, and no date or
software in the metadata.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

# A bare Figure (no pyplot) renders PNG and SVG with Agg's and the SVG backend's own
# canvases: no GUI backend is ever selected, and nothing is kept alive between charts.
from matplotlib import rc_context
from matplotlib.axes import Axes
from matplotlib.figure import Figure

if TYPE_CHECKING:
    from matplotlib.typing import RcKeyType

TARGETS = ((3.0, "SDG target: 3% average", "#1a7f37"), (5.0, "5%: no corridor above", "#b35900"))
#: At most this many tick labels on the time axis (every n-th period beyond it).
MAX_TIME_TICKS = 16
INK = "#1f2328"
MUTED = "#59636e"
OURS = "#0b5cad"
SMART = "#7b3fb5"
WEIGHTED = "#0a8a8a"
OFFICIAL = "#c2185b"
BAR = "#6e8fb5"
HIGHLIGHT = "#0b5cad"

RC: dict[RcKeyType, object] = {
    "svg.hashsalt": "sendcost-bulletin",
    "svg.fonttype": "path",
    "font.family": "DejaVu Sans",
    "font.size": 10,
    "axes.edgecolor": MUTED,
    "axes.labelcolor": INK,
    "xtick.color": MUTED,
    "ytick.color": MUTED,
    "axes.spines.top": False,
    "axes.spines.right": False,
}
PNG_DPI = 150
#: Decimals a drawn value keeps (as the bulletin's data files: publish.bulletin.DECIMALS).
DECIMALS = 6


@dataclass(frozen=True, slots=True)
class Chart:
    """A drawn chart: its file stem, its figure, and the alt text that describes it."""
    name: str
    figure: Figure
    alt: str
    title: str


def _figure(width: float = 8.0, height: float = 4.5) -> tuple[Figure, Axes]:
    fig = Figure(figsize=(width, height), layout="constrained")
    ax = fig.add_subplot()
    return fig, ax


def add_target_lines(ax: Axes, *, vertical: bool = False, per_corridor: bool = False) -> None:
    """The dashed target lines, labelled, with SVG ids target-3 / target-5: 3% always, 5%
    only on a chart of corridors (``per_corridor``), where that rule applies."""
    for value, label, color in TARGETS:
        if value == 5.0 and not per_corridor:
            continue
        line = (ax.axvline(value, color=color, linestyle="--", linewidth=1.4, label=label,
                           zorder=1)
                if vertical else
                ax.axhline(value, color=color, linestyle="--", linewidth=1.4, label=label,
                           zorder=1))
        line.set_gid(f"target-{value:g}")


def target_lines(fig: Figure) -> list[str]:
    """The gids of the target lines drawn on a figure (for checks)."""
    return sorted(gid for ax in fig.axes for line in ax.get_lines()
                  if (gid := line.get_gid()) is not None and gid.startswith("target-"))


def _title(ax: Axes, title: str, subtitle: str) -> None:
    """Title above subtitle: both laid out by the constrained layout, never on each other
    (the subtitle used to sit at a fraction of the axes' height, which on a tall chart
    reached up into the title)."""
    fig = ax.get_figure()
    assert isinstance(fig, Figure)
    fig.suptitle(title, x=0.01, ha="left", fontsize=12, fontweight="bold", color=INK)
    ax.set_title(subtitle, loc="left", fontsize=9, color=MUTED, pad=6)


def _legend_below(fig: Figure, handles: list[Any], ncols: int = 3) -> None:
    """The legend under the plot, outside it: it covers no bar, point or label."""
    if handles:
        fig.legend(handles=handles, loc="outside lower center", fontsize=8, frameon=False,
                   ncols=min(ncols, len(handles)))


def text_boxes(fig: Figure) -> list[tuple[str, tuple[float, float, float, float]]]:
    """Every visible, non-empty text of a drawn figure with its extent in display pixels
    (x0, y0, x1, y1) — titles, labels, tick labels, value labels, legend entries."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.text import Text

    canvas = FigureCanvasAgg(fig)
    with rc_context(RC):
        canvas.draw()
    renderer = canvas.get_renderer()
    # Tick labels outside the view interval exist but are not drawn.
    hidden: set[int] = set()
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            lo, hi = sorted(axis.get_view_interval())
            span = (hi - lo) * 1e-9
            for tick in [*axis.get_major_ticks(), *axis.get_minor_ticks()]:
                if not lo - span <= tick.get_loc() <= hi + span:
                    hidden.update({id(tick.label1), id(tick.label2)})
    out = []
    for t in fig.findobj(Text):
        if not t.get_visible() or not t.get_text().strip() or id(t) in hidden:
            continue
        bb = t.get_window_extent(renderer)
        out.append((t.get_text(), (bb.x0, bb.y0, bb.x1, bb.y1)))
    return out


def trend_chart(periods: Sequence[str], x: Sequence[float],
                series: Mapping[str, Sequence[float | None]],
                official: Sequence[tuple[str, float, str]], *, period: str) -> Chart:
    """The global average (and SmaRT, weighted average) over periods, official points on top.

    ``x``: each period's position in time (fractional years: gaps between survey rounds
    show as gaps); ``series``: label → values aligned with ``periods``; ``official``:
    (period, value, label) of the World Bank's published figures within the periods shown.
    """
    with rc_context(RC):
        fig, ax = _figure()
        x = list(x)
        styles = {"Global average (ours)": (OURS, "o", 2.4),
                  "SmaRT (ours)": (SMART, "s", 1.6),
                  "Weighted average (ours)": (WEIGHTED, "^", 1.6)}
        for label, values in series.items():
            color, marker, width = styles.get(label, (BAR, "o", 1.6))
            pts = [(i, v) for i, v in zip(x, values, strict=True) if v is not None]
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], color=color, marker=marker,
                        markersize=4, linewidth=width, label=label, zorder=3)
        index = dict(zip(periods, x, strict=True))
        seen: set[str] = set()
        for p, value, label in official:
            if p in index:
                color = (WEIGHTED if "weighted" in label else SMART if "SmaRT" in label
                         else OFFICIAL)
                ax.plot([index[p]], [value], linestyle="none", marker="D", markersize=7,
                        markerfacecolor="white", markeredgecolor=color, markeredgewidth=1.8,
                        label=None if label in seen else label, zorder=4)
                seen.add(label)
        add_target_lines(ax)
        step = max(1, -(-len(periods) // MAX_TIME_TICKS))
        keep = list(range(len(periods) - 1, -1, -step))[::-1]  # always the latest period
        # Upright labels while they fit side by side, vertical beyond.
        ax.set_xticks([x[i] for i in keep], [periods[i] for i in keep],
                      rotation=90 if len(keep) > 8 else 0)
        ax.set_ylabel("Total cost, % of amount sent")
        top = max([v for vs in series.values() for v in vs if v is not None]
                  + [v for _, v, _ in official] + [6.0])
        ax.set_ylim(0, top * 1.12)
        ax.grid(axis="y", color="#d0d7de", linewidth=0.6)
        # Below the plot, where it hides no point and no target line.
        _legend_below(fig, ax.get_legend_handles_labels()[0])
        latest = [(xi, v) for xi, v in zip(x, series.get("Global average (ours)", []),
                                           strict=False) if v is not None]
        if latest:
            ax.annotate(f"{latest[-1][1]:.2f}%", latest[-1], xytext=(6, 0),
                        textcoords="offset points", va="center", fontsize=9,
                        fontweight="bold", color=OURS)
        _title(ax, "Cost of sending USD 200, over time",
               f"up to {period}; open diamonds: the World Bank's published figures")
    described = ", ".join(f"{p} {v:.2f}%" for p, v in zip(
        periods, series.get("Global average (ours)", []), strict=False) if v is not None)
    alt = (f"Line chart of the global average cost of sending USD 200 by period: {described}. "
           "SmaRT and weighted averages are drawn below it; a dashed line marks the 3% "
           "target; diamonds mark the World Bank's published figures.")
    return Chart("trend", fig, alt, "Cost of sending USD 200, over time")


def bar_chart(name: str, title: str, subtitle: str, labels: Sequence[str],
              values: Sequence[float], *, highlight: Sequence[bool] | None = None,
              highlight_label: str | None = None, base_label: str | None = None,
              what: str = "", per_corridor: bool = False) -> Chart:
    """Horizontal bars (one per label, first at the top), target lines vertical (the 5%
    line only when the bars are corridors: ``per_corridor``)."""
    # Polars' parallel sums may differ in a mean's last bit from run to run; the x limit
    # drawn from them then moves by that bit, and so does the SVG's clip-path id (a hash of
    # the clip box): rounded far below what is drawn, the same data gives the same bytes.
    values = [round(v, DECIMALS) for v in values]
    with rc_context(RC):
        height = max(2.6, 0.6 + 0.26 * len(labels))
        fig, ax = _figure(8.0, height)
        y = list(range(len(labels)))[::-1]
        colors = [HIGHLIGHT if (highlight and highlight[i]) else BAR for i in range(len(labels))]
        ax.barh(y, values, color=colors, height=0.7, zorder=2)
        # Each value label right of its bar (of zero for a negative one), in the room the
        # x limit keeps for it: the label never reaches the next bar's row or the edge.
        top = max([*values, 6.0])
        for yi, v in zip(y, values, strict=True):
            # On a white ground above the target lines, which would otherwise strike it out.
            ax.annotate(f"{v:.2f}%", (max(v, 0.0), yi), xytext=(3, 0),
                        textcoords="offset points", va="center", fontsize=8, color=INK,
                        zorder=5, bbox={"boxstyle": "square,pad=0.1", "facecolor": "white",
                                        "edgecolor": "none"})
        add_target_lines(ax, vertical=True, per_corridor=per_corridor)
        ax.set_yticks(y, list(labels), fontsize=8)
        ax.set_ylim(-0.6, len(labels) - 0.4)
        ax.set_xlabel("Total cost, % of amount sent")
        ax.set_xlim(min(0.0, min(values, default=0.0) * 1.1), top * 1.22)
        ax.grid(axis="x", color="#d0d7de", linewidth=0.6)
        handles, _ = ax.get_legend_handles_labels()
        if highlight_label and highlight and any(highlight):
            from matplotlib.patches import Patch

            handles.append(Patch(color=HIGHLIGHT, label=highlight_label))
            if base_label:
                handles.append(Patch(color=BAR, label=base_label))
        _legend_below(fig, handles, ncols=4)
        _title(ax, title, subtitle)
    desc = "; ".join(f"{lab} {v:.2f}%" for lab, v in zip(labels, values, strict=True))
    lines = ("Dashed lines mark the 3% target and the 5% corridor limit." if per_corridor
             else "A dashed line marks the 3% target.")
    alt = f"Bar chart: {title.lower()} ({what or subtitle}). {desc}. {lines}"
    return Chart(name, fig, alt, title)


def postal_chart(rows: Sequence[tuple[str, float, float]], *, period: str) -> Chart:
    """Each transparent post-office service: its cost (y) against its corridor's median (x).

    ``rows``: (label, corridor median, service total cost).
    """
    with rc_context(RC):
        fig, ax = _figure(8.0, 5.0)
        xs = [r[1] for r in rows]
        ys = [r[2] for r in rows]
        top = max([*xs, *ys, 6.0]) * 1.1
        ax.plot([0, top], [0, top], color=MUTED, linewidth=0.8, linestyle=":",
                label="same as corridor median")
        cheaper = [(x, y) for x, y in zip(xs, ys, strict=True) if y <= x]
        dearer = [(x, y) for x, y in zip(xs, ys, strict=True) if y > x]
        if cheaper:
            ax.scatter([p[0] for p in cheaper], [p[1] for p in cheaper], color=WEIGHTED, s=22,
                       label="post service at or below its corridor's median", zorder=3)
        if dearer:
            ax.scatter([p[0] for p in dearer], [p[1] for p in dearer], color=OFFICIAL, s=22,
                       marker="^", label="post service above its corridor's median", zorder=3)
        add_target_lines(ax)
        ax.set_xlim(0, top)
        ax.set_ylim(min(0.0, min(ys, default=0.0)), top)
        ax.set_xlabel("Corridor median total cost, %")
        ax.set_ylabel("Post service total cost, %")
        ax.grid(color="#eaeef2", linewidth=0.6)
        _legend_below(fig, ax.get_legend_handles_labels()[0], ncols=2)
        _title(ax, "Post-office services against their corridor's median",
               f"{period}, USD 200; transparent services only")
    alt = (f"Scatter chart of {len(rows)} transparent post-office services in {period}: each "
           f"service's total cost against its corridor's median; {len(cheaper)} at or below the "
           f"median, {len(dearer)} above. A dashed line marks the 3% target.")
    return Chart("postal_benchmark", fig, alt,
                 "Post-office services against their corridor's median")


#: The post-corridor lines a trend chart draws at most (the rest are in its data file).
POSTAL_TREND_LINES = 8
#: One colour per line of the postal trend (colour-blind-safe, Okabe-Ito order).
LINE_COLOURS = ("#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9", "#000000",
                "#8c564b")


def postal_trend_chart(periods: Sequence[str], x: Sequence[float],
                       series: Mapping[str, tuple[Sequence[float | None],
                                                  Sequence[float | None]]],
                       *, period: str) -> Chart:
    """Each post's cost in a corridor over time (solid, filled markers) with the median of
    its market there (dotted, hollow markers, the same colour): is the gap closing?

    ``x``: each period's position in time (fractional years); ``series``: label → (the post's
    total cost %, its market's median %), aligned with ``periods``; at most
    ``POSTAL_TREND_LINES`` of them, in the order given. The 3% and 5% lines apply (each line
    is one corridor)."""
    from matplotlib.lines import Line2D

    with rc_context(RC):
        fig, ax = _figure(8.0, 4.6)
        x = list(x)
        shown = list(series.items())[:POSTAL_TREND_LINES]
        handles: list[Any] = []
        values: list[float] = []
        for (label, (post, market)), colour in zip(shown, LINE_COLOURS, strict=False):
            for vals, style, face in ((post, "-", colour), (market, ":", "white")):
                pts = [(xi, v) for xi, v in zip(x, vals, strict=True) if v is not None]
                values += [v for _, v in pts]
                if pts:
                    ax.plot([p[0] for p in pts], [p[1] for p in pts], color=colour,
                            linestyle=style, marker="o", markersize=4,
                            markerfacecolor=face, linewidth=1.6, zorder=3)
            handles.append(Line2D([], [], color=colour, marker="o", markersize=4,
                                  linewidth=1.6, label=label))
        handles.append(Line2D([], [], color=MUTED, linestyle=":", marker="o", markersize=4,
                              markerfacecolor="white", label="dotted: the median of the "
                                                             "post's market there"))
        add_target_lines(ax, per_corridor=True)
        handles += [line for line in ax.get_lines() if (line.get_gid() or "").startswith(
            "target-")]
        step = max(1, -(-len(periods) // MAX_TIME_TICKS))
        keep = list(range(len(periods) - 1, -1, -step))[::-1]
        ax.set_xticks([x[i] for i in keep], [periods[i] for i in keep],
                      rotation=90 if len(keep) > 8 else 0)
        if len(x) == 1:
            ax.set_xlim(x[0] - 0.5, x[0] + 0.5)
        ax.set_ylim(min([0.0, *values]), max([*values, 6.0]) * 1.12)
        ax.set_ylabel("Total cost, % of amount sent")
        ax.grid(axis="y", color="#d0d7de", linewidth=0.6)
        _legend_below(fig, handles, ncols=2)
        _title(ax, "Posts against their market, over time",
               f"up to {period}, USD 200; the market: the corridor's services no post sells "
               "or pays out")
    desc = "; ".join(
        f"{label}: " + ", ".join(f"{p} {v:.2f}% (market {m:.2f}%)" for p, v, m in zip(
            periods, post, market, strict=True) if v is not None and m is not None)
        for label, (post, market) in shown)
    alt = (f"Line chart of {len(shown)} posts' total cost in one of their corridors by period, "
           f"each beside its market's median: {desc or 'no cost disclosed'}. Dashed lines "
           "mark the 3% target and the 5% corridor limit.")
    return Chart("postal_trend", fig, alt, "Posts against their market, over time")


def scorecard_chart(rows: Sequence[tuple[str, float | None]], *, period: str,
                    speed_target: float) -> Chart:
    """The G20 remittance scorecard's shares (0-100 %), one bar each, first at the top; a
    share not known is written "unknown" where its bar would be; the speed target (75 %
    within one hour) as a dashed vertical line, gid ``target-speed``."""
    with rc_context(RC):
        fig, ax = _figure(8.0, max(2.2, 0.8 + 0.32 * len(rows)))
        y = list(range(len(rows)))[::-1]
        values = [round(v, DECIMALS) if v is not None else 0.0 for _, v in rows]
        ax.barh(y, values, color=BAR, height=0.6, zorder=2)
        for yi, (_, v) in zip(y, rows, strict=True):
            ax.annotate("unknown" if v is None else f"{v:.1f}%", (v or 0.0, yi),
                        xytext=(3, 0), textcoords="offset points", va="center", fontsize=8,
                        color=INK, zorder=5, bbox={"boxstyle": "square,pad=0.1",
                                                   "facecolor": "white", "edgecolor": "none"})
        line = ax.axvline(speed_target, color=TARGETS[0][2], linestyle="--", linewidth=1.4,
                          label=f"G20 speed target: {speed_target:g}% within one hour",
                          zorder=1)
        line.set_gid("target-speed")
        ax.set_yticks(y, [label for label, _ in rows], fontsize=8)
        ax.set_ylim(-0.6, len(rows) - 0.4)
        ax.set_xlim(0, 118)
        ax.set_xticks([0, 25, 50, 75, 100])
        ax.set_xlabel("Share, %")
        ax.grid(axis="x", color="#d0d7de", linewidth=0.6)
        _legend_below(fig, ax.get_legend_handles_labels()[0], ncols=1)
        _title(ax, "The G20 remittance scorecard: what services offer",
               f"{period}, USD 200; supply side (services and quotes), not payments")
    desc = "; ".join(f"{label} {'unknown' if v is None else f'{v:.1f}%'}" for label, v in rows)
    alt = (f"Bar chart of the G20 remittance scorecard in {period}: {desc}. A dashed line "
           f"marks the G20 speed target, {speed_target:g}% within one hour.")
    return Chart("g20_scorecard", fig, alt, "The G20 remittance scorecard")


def save(chart: Chart, directory: Path) -> list[Path]:
    """Write ``<name>.png`` and ``<name>.svg``; the same chart gives the same bytes."""
    directory.mkdir(parents=True, exist_ok=True)
    png, svg = directory / f"{chart.name}.png", directory / f"{chart.name}.svg"
    with rc_context(RC):
        chart.figure.savefig(png, format="png", dpi=PNG_DPI, metadata={"Software": None},
                             facecolor="white")
        chart.figure.savefig(svg, format="svg", metadata={"Date": None}, facecolor="white")
    return [png, svg]
