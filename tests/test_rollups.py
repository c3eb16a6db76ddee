"""What serving reads instead of every quote: the store's rollups (migration 8), and the
snapshot built from them and refreshed by what changed (publish.data)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import polars as pl
from polars.testing import assert_frame_equal
from test_store import T0, make_quote

from corridors.store import Store, connect
from corridors.types import DataKind, Firm, FirmType, Quote
from metrics.services import services_from_rollups, services_in_period
from publish import data as publish_data
from publish.data import EVERYTHING, ApiData, build_snapshot, load_changes

LABELS = ("2026-10", "2026-11", "2026Q4")


def _quotes(day: int, *, month: int = 11, to: str = "MEX", **over: Any) -> list[Quote]:
    """A day's quotes of three services from the USA ``to`` a country in ``month`` of 2026,
    each at 200 and 500."""
    at = T0.replace(month=month, day=day)
    period = f"2026-{month:02d}"
    out = []
    for n, (firm, key, fee) in enumerate([("Acme", "acme", "4.99"), ("Bolt", "bolt", None),
                                          ("Cato", "cato", "2.50")]):
        for usd in (200, 500):
            fields: dict[str, Any] = dict(
                firm=Firm(firm, FirmType.MTO), service_key=f"test:{key}:USA-{to}",
                destination_code=to,
                period=period, amount_usd=usd, send_amount=Decimal(usd),
                fee=None if fee is None else Decimal(fee) + day + n,
                applied_rate=Decimal("17.1234") - Decimal(day) / 100,
                collected_at=at + dt.timedelta(minutes=n))
            out.append(make_quote(**{**fields, **over}))
    return out


def _mixed() -> list[Quote]:
    """Several quotes per service and period, with what the means must leave out or keep
    apart: a stale reference rate, an undisclosed rate, an emulated source, a survey quote
    of the quarter with its published margin and total."""
    quotes = [q for day in (3, 4, 5) for q in _quotes(day)] + _quotes(7, month=10)
    quotes += _quotes(6, flags=("reference_stale",))
    quotes += _quotes(8, transparent=False, applied_rate=None)
    quotes += _quotes(9, source="sandbox-op", data_kind=DataKind.EMULATED)
    quotes.append(make_quote(
        service_key="test:rpw:USA-MEX", firm=Firm("Survey Bank", FirmType.BANK),
        period="2026Q4", source="rpw", data_kind=DataKind.SURVEY,
        fx_margin_reported=Decimal("1.25"), total_cost_reported=Decimal("3.75"),
        received_amount=None, fee_deducted=None))
    return quotes


async def _frame(store: Store) -> pl.DataFrame:
    return await store.quote_frame()


async def test_the_rollups_give_the_services_the_quotes_give(fresh_database: str) -> None:
    store = await connect(fresh_database)
    try:
        await store.migrate()
        quotes = _mixed()
        await store.store_quotes(quotes[:20])
        await store.store_quotes(quotes)  # the first 20 again: the duplicates' path
        rollups, latest, _ = await load_changes(store, EVERYTHING)
        frame = await _frame(store)
        assert frame.height == len(quotes)
        for label in LABELS:
            for usd in (200, 500):
                want = services_in_period(frame.lazy(), period=label, amount_usd=usd).collect()
                got = services_from_rollups(rollups.lazy(), period=label,
                                            amount_usd=usd).collect()
                assert want.height, (label, usd)
                assert_frame_equal(got, want, check_exact=False, rel_tol=1e-12)
        # The latest prices are the latest quote of each service, period, amount and kind.
        key = ["period", "service_id", "send_amount", "data_kind"]
        expected = (frame.with_columns(pl.col(key).cast(pl.String))
                    .group_by(key).agg(pl.col("collected_at").max())
                    .sort(key).rows())
        assert latest.select(*key, "collected_at").with_columns(pl.col(key).cast(pl.String)) \
            .sort(key).rows() == expected
        assert latest.height < frame.height
    finally:
        await store.close()


async def test_a_rollup_carries_every_flag_of_its_quotes_once(fresh_database: str) -> None:
    """Flags merge across writes into one sorted set: a write whose quotes carry a flag the
    row lacks adds it; one whose flags the row holds already (or none) leaves them."""
    store = await connect(fresh_database)
    try:
        await store.migrate()
        day = [_quotes(d, flags=f) for d, f in (
            (3, ("estimate",)), (4, ("approximate_amount", "estimate")), (5, ()),
            (6, ("estimate",)), (7, ("bank_transfer_only",)))]
        want = [["estimate"], ["approximate_amount", "estimate"],
                ["approximate_amount", "estimate"], ["approximate_amount", "estimate"],
                ["approximate_amount", "bank_transfer_only", "estimate"]]
        for quotes, flags in zip(day, want, strict=True):
            await store.store_quotes(quotes)
            rows = await store.pool.fetch(
                "SELECT flags, quotes FROM service_periods WHERE period = '2026-11'")
            assert len(rows) == 6
            assert all(r["flags"] == flags for r in rows), (flags, rows)
        assert {r["quotes"] for r in rows} == {5}
    finally:
        await store.close()


def _comparable(snap: publish_data.Snapshot) -> dict[str, Any]:
    index = {c: {p: [(pt.send_amount, [e["service_id"] for e in pt.services],
                      [e["service_id"] for e in pt.non_transparent]) for pt in points]
                 for p, points in by_period.items()} for c, by_period in snap.index.items()}
    return {"periods": snap.periods, "index": index,
            "services": {k: v.to_dicts() for k, v in sorted(snap.services.items())},
            "table": snap.corridor_table.sort("period", "amount_usd", "source_code",
                                              "destination_code").to_dicts()}


async def test_a_refresh_reads_what_changed_and_keeps_past_periods(
        fresh_database: str, monkeypatch: Any) -> None:
    store = await connect(fresh_database)
    try:
        await store.migrate()
        await store.store_quotes(_mixed())
        read: list[tuple[publish_data.Since, int, int]] = []
        real_load = publish_data.load_changes

        async def counting(s: Store, since: publish_data.Since) -> tuple[
                pl.DataFrame, pl.DataFrame, publish_data.Since]:
            rollups, latest, upto = await real_load(s, since)
            read.append((since, rollups.height, latest.height))
            return rollups, latest, upto

        monkeypatch.setattr(publish_data, "load_changes", counting)
        api = ApiData(store)
        first = await api.refresh()
        # Not every quote: one per service, period, send amount and kind.
        assert first.quotes.height < len(_mixed())
        october = await api.indicators(first, "2026-10", 200)
        await store.store_quotes(_quotes(20))  # a new collection in November
        second = await api.refresh()
        assert second.version > first.version
        # Only the rows of November's corridor changed (more may be read again: those of
        # every transaction under way on the server at the last look).
        assert api.last_changes == publish_data.Changes(frozenset({"2026-11"}),
                                                        frozenset({("USA", "MEX", "2026-11")}),
                                                        survey=False)
        assert read[-1][0] != publish_data.EVERYTHING
        assert second.indicators[("2026-10", 200)] is october
        assert second.services[("2026-11", 200)]["quotes"].sum() == \
            first.services[("2026-11", 200)]["quotes"].sum() + 3
        # What the refresh built is what a whole build from the store gives.
        whole = build_snapshot(*(await real_load(store, EVERYTHING))[:2], second.version)
        assert _comparable(second) == _comparable(whole)
        assert (await api.indicators(second, "2026-11", 200)) == \
            (await api.indicators(whole, "2026-11", 200))
    finally:
        await store.close()


async def test_a_write_that_commits_late_under_lower_ids_is_served(fresh_database: str) -> None:
    store = await connect(fresh_database)
    try:
        await store.migrate()
        await store.store_quotes(_quotes(3))
        api = ApiData(store)
        await api.refresh()
        async with store.pool.acquire() as conn:
            late = conn.transaction()
            await late.start()
            # Draws its quote ids first, commits last.
            await store.store_quotes(_quotes(4, month=10), conn=conn)
            await store.store_quotes(_quotes(5))
            seen = await api.refresh()
            assert "2026-10" not in seen.periods
            await late.commit()
        snap = await api.refresh()
        assert "2026-10" in snap.periods
        assert [p for p in snap.index[("USA", "MEX")]] == ["2026-10", "2026-11"]
        whole = build_snapshot(*(await load_changes(store, EVERYTHING))[:2], snap.version)
        assert _comparable(snap) == _comparable(whole)
    finally:
        await store.close()


async def test_the_index_keeps_the_corridors_asked_for_last(
        fresh_database: str, monkeypatch: Any) -> None:
    store = await connect(fresh_database)
    try:
        await store.migrate()
        await store.store_quotes(_quotes(3) + _quotes(4, to="PHL", receive_currency="PHP"))
        _, latest, _ = await load_changes(store, EVERYTHING)
        monkeypatch.setattr(publish_data, "CORRIDORS_KEPT", 1)
        index = publish_data.PriceIndex(latest)
        assert sorted(index) == [("USA", "MEX"), ("USA", "PHL")]
        mex = index[("USA", "MEX")]
        assert index[("USA", "MEX")] is mex  # kept
        phl = index[("USA", "PHL")]
        assert len(index._made) == 1 and ("USA", "PHL") in index._made
        again = index[("USA", "MEX")]  # made again, the same
        assert again is not mex
        assert [[e["service_id"] for p in again["2026-11"] for e in p.services]] == \
            [[e["service_id"] for p in mex["2026-11"] for e in p.services]]
        assert phl["2026-11"][0].receive_currency == "PHP"
        assert {e["receive_currency_basis"] for p in again["2026-11"]
                for e in p.services} == {"reported"}
    finally:
        await store.close()
