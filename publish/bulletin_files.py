"""Writing a bulletin's files: the charts, pages, PDF, tables, metadata and zip of a computed
bulletin (``publish.bulletin``) rendered by ``publish.bulletin_render``, written whole into a
folder or not at all; and publishing one in the running service.

Computing (``publish.bulletin``) and rendering (``publish.bulletin_render``) import nothing of
this module, so neither imports the other's user: the rendering reads the computed bulletin,
this module joins the two.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import polars as pl

from corridors.types import EMULATED_WARNING
from metrics import METHODOLOGY_VERSION
from publish import bulletin_render as render
from publish import charts as ch
from publish import emulated as marks
from publish.alerts import bulletin_published
from publish.bulletin import (
    DECIMALS,
    HEADLINE_AMOUNT,
    LICENCE,
    LICENCE_URL,
    RPW_ATTRIBUTION,
    Bulletin,
    base_settings,
    bulletins_dir,
    choose_data,
    compute_bulletin,
    csv_bytes,
    data_tables,
    indicative,
    load_store_quotes,
    rpw_credit,
)

log = logging.getLogger(__name__)


def _zip(folder: Path, target: Path, prefix: str) -> None:
    """A deterministic zip of ``folder``: sorted entries, fixed timestamps and modes."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p != target)
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for path in files:
            info = zipfile.ZipInfo(f"{prefix}/{path.relative_to(folder).as_posix()}",
                                   date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, path.read_bytes())


def _metadata(b: Bulletin, files: dict[str, bytes]) -> dict[str, Any]:
    c = b.coverage
    warning = ({"warning": EMULATED_WARNING, "emulated_sources": b.generated_from["emulated"]}
               if b.generated_from.get("emulated") else {})
    return {
        **warning,
        "title": f"sendcost SDG 10.c bulletin, {b.period}",
        "period": b.period,
        "amount_usd": HEADLINE_AMOUNT,
        "methodology_version": METHODOLOGY_VERSION,
        "indicative": indicative(b),
        "licence": {"name": LICENCE, "url": LICENCE_URL,
                    "attribution": f"sendcost bulletin {b.period}; {rpw_credit(b)} "
                                   f"{RPW_ATTRIBUTION} ({LICENCE})."},
        "sources": [
            {"name": "World Bank Remittance Prices Worldwide (RPW)",
             "url": "http://remittanceprices.worldbank.org", "licence": LICENCE,
             "attribution": RPW_ATTRIBUTION,
             "used_for": (f"{b.survey_quotes:,} of the period's {b.coverage['quotes']:,} "
                          "quotes at USD 200, and the method" if b.survey_quotes else
                          "the method only: no RPW quote in this period")},
            {"name": "World Bank published RPW figures (corridors/data/published_figures.csv), "
                     "each read from the World Bank's own publication at its URL",
             "used_for": "official figures shown beside ours, same period only",
             "licence": LICENCE},
            {"name": "World Bank/KNOMAD bilateral remittance matrices 2011 and 2021 "
                     "(the one nearest the period)",
             "used_for": "weights of the weighted average", "licence": LICENCE},
        ],
        "generated_from": b.generated_from,
        "coverage": {k: (v.strftime("%Y-%m-%dT%H:%M:%SZ") if hasattr(v, "strftime") else v)
                     for k, v in c.items()},
        "progress": {k: round(v, DECIMALS) if isinstance(v, float) else v
                     for k, v in b.progress.as_dict().items()},
        # Every file but this one and the zip (which contains this one); the zip's hash is in
        # bulletin-<period>.zip.sha256 beside it.
        "files": {name: hashlib.sha256(data).hexdigest()
                  for name, data in sorted(files.items())},
    }


def render_files(b: Bulletin, folder: Path) -> list[str]:
    """Write every file of the bulletin into ``folder`` (which exists and is empty)."""
    emulated = bool(b.generated_from.get("emulated"))
    charts = render.charts(b)
    if emulated:
        charts = [marks.chart(c) for c in charts]
    for chart in charts:
        ch.save(chart, folder / "charts")
    written: dict[str, bytes] = {}
    data = folder / "data"
    data.mkdir()
    for name, frame in data_tables(b).items():
        body = csv_bytes(marks.table(frame) if emulated else frame)
        (data / f"{name}.csv").write_bytes(body)
        written[f"data/{name}.csv"] = body
    for path in sorted((folder / "charts").iterdir()):
        written[f"charts/{path.name}"] = path.read_bytes()
    html = render.html(b, charts)
    md = render.markdown(b)
    if emulated:
        html, md = marks.html(html), marks.markdown(md)
    (folder / "index.html").write_text(html, encoding="utf-8")
    (folder / "bulletin.md").write_text(md, encoding="utf-8")
    written["index.html"] = html.encode()
    written["bulletin.md"] = md.encode()
    pdf = render.pdf(html, folder)
    (folder / "bulletin.pdf").write_bytes(pdf)
    written["bulletin.pdf"] = pdf
    meta = json.dumps(_metadata(b, written), indent=2, ensure_ascii=False, sort_keys=False)
    (data / "metadata.json").write_text(meta + "\n", encoding="utf-8")
    archive = folder / f"bulletin-{b.period}.zip"
    _zip(folder, archive, b.period)
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    # The format of sha256sum, so `sha256sum -c bulletin-P.zip.sha256` checks it.
    (folder / f"{archive.name}.sha256").write_text(f"{digest}  {archive.name}\n",
                                                   encoding="utf-8")
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def write_bulletin(quotes: pl.DataFrame, period: str, out_dir: str | Path, *,
                   generated_from: dict[str, Any], include_emulated: bool = False,
                   config: Any = None) -> Path:
    """Compute and write ``<out_dir>/<period>/``; replace an older one only when done.

    ``config``: the service's Config (minimum bases, configured corridors, survey sources);
    None: the defaults. Raises NoData (writing nothing) when the period has no quotes,
    EmulatedOnly when it has only emulated ones and ``include_emulated`` is false
    (``choose_data``).
    """
    quotes, generated_from = choose_data(quotes, period, generated_from,
                                         include_emulated=include_emulated)
    b = compute_bulletin(quotes, period, generated_from=generated_from,
                         **base_settings(config))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    final = out / b.period
    tmp = Path(tempfile.mkdtemp(prefix=f".{b.period}.", dir=out))
    try:
        render_files(b, tmp)
        tmp.chmod(0o755)
        old = None
        if final.exists():
            old = out / f".{b.period}.old"
            shutil.rmtree(old, ignore_errors=True)
            final.rename(old)
        tmp.rename(final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final




async def publish_bulletin(app: Any, period: str) -> dict[str, Any]:
    """Publish ``period``'s bulletin of the running service into <data_dir>/bulletins/.

    The heavy work (Polars, matplotlib, WeasyPrint) runs in a worker thread.
    """
    from corridors import runtime

    store = app[runtime.STORE]
    out = bulletins_dir(app[runtime.CONFIG])
    quotes, generated_from = await load_store_quotes(store)
    folder = await asyncio.to_thread(write_bulletin, quotes, period, out,
                                     generated_from=generated_from,
                                     config=app[runtime.CONFIG])
    log.info("published the bulletin of %s in %s", period, folder)
    await bulletin_published(app, folder.name)
    return {"period": folder.name, "folder": str(folder)}
