"""The bulletin's charts at every data size: no drawn text overlaps another or leaves the
figure (checked on the rendered text boxes), titles above subtitles, legends clear of the
value labels, and the 5% line only where the per-corridor rule applies."""

from __future__ import annotations

from pathlib import Path

import pytest
from matplotlib.figure import Figure

from publish import charts as ch

SIZES = (1, 5, 50, 300)


def _overlaps(fig: Figure) -> list[tuple[str, str]]:
    boxes = ch.text_boxes(fig)
    width, height = fig.canvas.get_width_height()
    out = []
    for text, (x0, y0, x1, y1) in boxes:
        # inside the figure (a pixel of rounding allowed)
        if x0 < -1 or y0 < -1 or x1 > width + 1 or y1 > height + 1:
            out.append((text, "<outside the figure>"))
    ordered = sorted(boxes, key=lambda b: b[1][1])
    for i, (a, (ax0, ay0, ax1, ay1)) in enumerate(ordered):
        for b, (bx0, by0, bx1, by1) in ordered[i + 1:]:
            if by0 >= ay1:
                break
            if min(ax1, bx1) - max(ax0, bx0) > 0.5 and min(ay1, by1) - max(ay0, by0) > 0.5:
                out.append((a, b))
    return out


def _labels(n: int) -> list[str]:
    # long corridor names, as the bulletin writes them
    return [f"Bosnia and Herzegovina {i} → Democratic Republic of the Congo" for i in range(n)]


def _values(n: int) -> list[float]:
    # close values, a negative one and a dear one: labels in every position
    return [round(-2.5 + (i * 37 % 200) / 10, 2) for i in range(n)]


@pytest.mark.parametrize("n", SIZES)
def test_bar_chart_text_never_overlaps(n: int) -> None:
    chart = ch.bar_chart(
        "sending_countries", "Average cost by sending country",
        "2014Q2, USD 200; G20 members highlighted", _labels(n), _values(n),
        highlight=[i % 3 == 0 for i in range(n)], highlight_label="G20 member",
        base_label="not G20", what="by sending country")
    assert _overlaps(chart.figure) == []


@pytest.mark.parametrize("n", SIZES)
def test_corridor_chart_text_never_overlaps(n: int) -> None:
    chart = ch.bar_chart("most_expensive", "The most expensive corridors",
                         "2014Q2, USD 200, corridor averages", _labels(n), _values(n),
                         what="corridor averages", per_corridor=True)
    assert _overlaps(chart.figure) == []


@pytest.mark.parametrize("n", SIZES)
def test_trend_chart_text_never_overlaps(n: int) -> None:
    periods = [f"{2000 + i // 4}Q{i % 4 + 1}" for i in range(n)]
    x = [2000 + i / 4 for i in range(n)]
    series = {"Global average (ours)": [8 - i / (n + 1) for i in range(n)],
              "SmaRT (ours)": [5 - i / (n + 1) for i in range(n)],
              "Weighted average (ours)": [6 - i / (n + 1) for i in range(n)]}
    official = [(periods[-1], 7.5, "World Bank: global average")]
    chart = ch.trend_chart(periods, x, series, official, period=periods[-1])
    assert _overlaps(chart.figure) == []


@pytest.mark.parametrize("n", SIZES)
def test_postal_chart_text_never_overlaps(n: int) -> None:
    rows = [(f"Post {i}", 3 + i % 7, 2 + i % 9) for i in range(n)]
    chart = ch.postal_chart(rows, period="2014Q2")
    assert _overlaps(chart.figure) == []


def test_title_stands_above_the_subtitle() -> None:
    """The sending-country chart (tall) had its title printed over its subtitle."""
    for n in SIZES:
        chart = ch.bar_chart("sending_countries", "Average cost by sending country",
                             "2014Q2, USD 200; G20 members highlighted", _labels(n), _values(n))
        boxes = dict(ch.text_boxes(chart.figure))
        title = boxes["Average cost by sending country"]
        subtitle = boxes["2014Q2, USD 200; G20 members highlighted"]
        assert title[1] >= subtitle[3], (n, title, subtitle)


def test_legend_hides_no_value_label() -> None:
    chart = ch.bar_chart("firm_types", "Average cost by type of provider", "2014Q2, USD 200",
                         ["Bank", "Money Transfer Operator", "Post office"], [11.0, 6.5, 7.1],
                         highlight=[False, False, True], highlight_label="postal",
                         base_label="other providers")
    fig = chart.figure
    boxes = ch.text_boxes(fig)  # draws it
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    legends = [lg.get_window_extent(renderer) for lg in fig.legends]
    legends += [lg.get_window_extent(renderer) for ax in fig.axes
                if (lg := ax.get_legend()) is not None]
    assert legends
    values = [box for text, box in boxes if text.endswith("%") and
              text[0].isdigit()]
    assert len(values) == 3
    for box in legends:
        for x0, y0, x1, y1 in values:
            assert min(box.x1, x1) <= max(box.x0, x0) or min(box.y1, y1) <= max(box.y0, y0)


def test_five_percent_line_only_on_corridor_charts() -> None:
    kinds = {
        "firm_types": ch.bar_chart("firm_types", "t", "s", ["Bank"], [9.0]),
        "receiving_regions": ch.bar_chart("receiving_regions", "t", "s", ["SSA"], [9.0]),
        "most_expensive": ch.bar_chart("most_expensive", "t", "s", ["A → B"], [9.0],
                                       per_corridor=True),
        "trend": ch.trend_chart(["2014Q1"], [2014.0], {"SmaRT (ours)": [5.2]}, [],
                                period="2014Q1"),
        "postal_benchmark": ch.postal_chart([("Post", 6.0, 5.0)], period="2014Q1"),
    }
    assert {name: ch.target_lines(c.figure) for name, c in kinds.items()} == {
        "firm_types": ["target-3"], "receiving_regions": ["target-3"],
        "most_expensive": ["target-3", "target-5"], "trend": ["target-3"],
        "postal_benchmark": ["target-3"]}


@pytest.mark.parametrize("n", SIZES)
def test_postal_trend_chart_text_never_overlaps(n: int) -> None:
    periods = [f"{2000 + i // 4}Q{i % 4 + 1}" for i in range(n)]
    x = [2000 + i / 4 for i in range(n)]
    series = {f"Post {k} with a long name, Country {k} → Country {k + 1}": (
        [4 + k - i / (n + 1) if (i + k) % 5 else None for i in range(n)],
        [6 - i / (n + 1) for i in range(n)]) for k in range(10)}
    chart = ch.postal_trend_chart(periods, x, series, period=periods[-1])
    assert _overlaps(chart.figure) == []
    assert ch.target_lines(chart.figure) == ["target-3", "target-5"]
    # at most POSTAL_TREND_LINES posts, each named once in the legend
    legend = [t.get_text() for lg in chart.figure.legends for t in lg.get_texts()]
    assert sum(t.startswith("Post ") for t in legend) == ch.POSTAL_TREND_LINES


def test_postal_trend_chart_is_the_same_bytes_for_the_same_data(tmp_path: Path) -> None:
    series = {"La Poste via Western Union, Belgium → DR Congo": ([11.59, 14.88, 9.42, 9.74],
                                                                 [8.35, 8.84, 7.59, 9.31])}
    args = (["2013Q1", "2013Q3", "2014Q1", "2014Q2"], [2013.0, 2013.5, 2014.0, 2014.25],
            series)
    first = ch.save(ch.postal_trend_chart(*args, period="2014Q2"), tmp_path / "a")
    second = ch.save(ch.postal_trend_chart(*args, period="2014Q2"), tmp_path / "b")
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in second]
