"""Marks on everything made with emulated data: "emulated data — not real prices".

Emulated quotes (the sandbox's) enter a bulletin, a page or an answer only when a user asks
for them (``--include-emulated``, ``?include=emulated``); what is made of them then says so
where a reader cannot miss it: a banner on every HTML page and on every PDF page, the first
line of the Markdown, the title of every chart, a column of every CSV.
"""

from __future__ import annotations

import dataclasses
import html as html_lib

import polars as pl

from corridors.types import EMULATED_WARNING
from publish.charts import Chart

#: The banner's colours: white on a deep red, readable in print and on screen.
BANNER_CSS = ("background:#b3261e;color:#fff;font-weight:bold;padding:0.6em 1em;"
              "font-size:1.1em;text-align:center;border-radius:4px;margin:0 0 1em")
_TEXT = EMULATED_WARNING.upper()


def banner_html() -> str:
    """The banner as one HTML element (role=alert, class emulated-banner)."""
    return (f'<div class="emulated-banner" role="alert" style="{BANNER_CSS}">'
            f"{html_lib.escape(_TEXT)}: this was made from the sandbox's invented quotes, "
            "not from any provider's prices</div>")


def html(document: str) -> str:
    """``document`` with the banner first in its body, and on every printed page."""
    page_rule = ("<style>@page { @top-center { content: \"" + _TEXT + "\"; "
                 "font: bold 10pt \"DejaVu Sans\", sans-serif; color: #b3261e; } }</style>")
    head_end = document.find("</head>")
    if head_end >= 0:
        document = document[:head_end] + page_rule + "\n" + document[head_end:]
    body = document.find("<body")
    if body < 0:
        return banner_html() + document
    end = document.index(">", body) + 1
    return document[:end] + "\n" + banner_html() + document[end:]


def markdown(text: str) -> str:
    """``text`` with the warning as its first line."""
    return f"> **{_TEXT}** — made from the sandbox's invented quotes.\n\n{text}"


def table(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` with a first column ``warning`` saying it on every row."""
    return frame.select(pl.lit(EMULATED_WARNING).alias("warning"), pl.all())


def chart(c: Chart) -> Chart:
    """``c`` with the warning as the figure's top line (the constrained layout makes room)
    and at the start of its alt text."""
    text = c.figure.suptitle(_TEXT, color="#b3261e", fontweight="bold", fontsize=12)
    text.set_gid("emulated-warning")
    return dataclasses.replace(c, alt=f"{EMULATED_WARNING}. {c.alt}")
