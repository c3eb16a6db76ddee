"""Bad input at the API's edges (issue 14, item 5): each answered with a clean problem, never a
traceback; control characters never reach a log line as they are; what the OpenAPI document
declares is what is served; logs say a thing once."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import msgspec
import pytest
from aiohttp.test_utils import TestClient, TestServer
from api_support import make_app
from yarl import URL

from collector.schedule import COLLECTION_JOBS, CollectionJobs
from corridors import runtime
from corridors.store import Store
from publish.contract_ops import Bulletins
from publish.openapi import document
from sendcost import cli

AUTH = {"Authorization": "Bearer s3cret"}


def declared(path: str, method: str, status: int, content_type: str | None) -> None:
    """The OpenAPI document lists ``status`` for the operation, with ``content_type``."""
    operation = document()["paths"][path][method.lower()]
    response = operation["responses"].get(str(status))
    assert response is not None, (method, path, status)
    if content_type is not None:
        assert content_type in response.get("content", {}), (method, path, status,
                                                            content_type)


def problem(resp_status: int, body: Any, headers: Any) -> None:
    assert headers["Content-Type"] == "application/problem+json"
    assert headers["Cache-Control"] == "no-store"
    assert body["status"] == resp_status and body["detail"]


# --- bulletin files -----------------------------------------------------------------------------


@pytest.fixture
async def bulletins(store: Store, database_url: str, tmp_path: Path,
                    monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[TestClient]:
    """The app over a data folder holding one bulletin (2014Q2), written here by hand: the
    routes serve files, whatever wrote them."""
    monkeypatch.setenv("SENDCOST_ADMIN_TOKEN", "s3cret")
    folder = tmp_path / "bulletins" / "2014Q2"
    (folder / "data").mkdir(parents=True)
    (folder / "index.html").write_text("<p>bulletin</p>", encoding="utf-8")
    (folder / "bulletin.md").write_text("# Bulletin 2014Q2\n", encoding="utf-8")
    (folder / "data" / "metadata.json").write_text(json.dumps({
        "period": "2014Q2", "methodology_version": "1", "generated_from": {"kind": "store"},
        "progress": {"call": "x"}}), encoding="utf-8")
    async with TestClient(TestServer(make_app(database_url, data_dir=tmp_path))) as client:
        yield client


@pytest.mark.parametrize("method", ["GET", "HEAD"])
@pytest.mark.parametrize("raw", ["%00", "index.html%00.png", "bulletin.md%0D%0Afake",
                                 "%0A", "charts/%1B%5B31m"])
async def test_a_control_character_in_a_bulletin_path_is_a_400_not_a_traceback(
        bulletins: TestClient, caplog: pytest.LogCaptureFixture, method: str,
        raw: str) -> None:
    caplog.set_level(logging.DEBUG)
    resp = await bulletins.request(method, URL(f"/v1/bulletins/2014Q2/{raw}", encoded=True))
    assert resp.status == 400, await resp.text()
    assert resp.headers["Content-Type"] == "application/problem+json"
    assert resp.headers["Cache-Control"] == "no-store"
    if method == "GET":
        body = await resp.json(content_type=None)
        problem(400, body, resp.headers)
        assert body["parameter"] == "path" and "control character" in body["detail"]
        assert "\x00" not in json.dumps(body, ensure_ascii=True).replace("\\u0000", "")
    declared("/v1/bulletins/{period}/{path}", "get", 400, "application/problem+json")
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


async def test_a_bulletin_file_that_is_not_there_is_a_404_problem(bulletins: TestClient
                                                                   ) -> None:
    for path in ("nothing.md", "..%2F..%2Fsecret", "data", "index.html/x", "a" * 300,
                 "%C3%A9.md"):
        resp = await bulletins.get(URL(f"/v1/bulletins/2014Q2/{path}", encoded=True))
        assert resp.status == 404, (path, await resp.text())
        problem(404, await resp.json(content_type=None), resp.headers)


async def test_bulletin_412_and_416_are_problems_never_cached(bulletins: TestClient) -> None:
    url = "/v1/bulletins/2014Q2/bulletin.md"
    ok = await bulletins.get(url)
    assert ok.status == 200 and ok.headers["Cache-Control"] == "public, max-age=3600"
    etag = ok.headers["ETag"]
    size = len(await ok.read())
    # The ETag the file is served with satisfies If-Match; another does not.
    assert (await bulletins.get(url, headers={"If-Match": etag})).status == 200
    assert (await bulletins.get(url, headers={"If-Match": "*"})).status == 200
    assert (await bulletins.get(url, headers={"If-Match": f'"x", {etag}'})).status == 200
    for headers in ({"If-Match": '"not-this-one"'},
                    {"If-Unmodified-Since": "Mon, 01 Jan 2001 00:00:00 GMT"}):
        resp = await bulletins.get(url, headers=headers)
        assert resp.status == 412, headers
        body = await resp.json(content_type=None)
        problem(412, body, resp.headers)
        assert "ETag" not in resp.headers and "Last-Modified" not in resp.headers
        declared("/v1/bulletins/{period}/{path}", "get", 412, "application/problem+json")
    for rng in (f"bytes={size + 10}-", "bytes=abc"):
        resp = await bulletins.get(url, headers={"Range": rng})
        assert resp.status == 416, rng
        body = await resp.json(content_type=None)
        problem(416, body, resp.headers)
        assert resp.headers["Content-Range"] == f"bytes */{size}"
        declared("/v1/bulletins/{period}/{path}", "get", 416, "application/problem+json")
    # A satisfiable range is still served (206), and If-Range with an old date gives it all.
    part = await bulletins.get(url, headers={"Range": "bytes=0-1"})
    assert part.status == 206 and await part.read() == b"# "
    whole = await bulletins.get(url, headers={"Range": f"bytes={size + 10}-",
                                              "If-Range": "Mon, 01 Jan 2001 00:00:00 GMT"})
    assert whole.status == 200 and len(await whole.read()) == size
    # HEAD answers the same statuses, without a body.
    head = await bulletins.head(url, headers={"If-Match": '"not-this-one"'})
    assert head.status == 412 and head.headers["Content-Type"] == "application/problem+json"


async def test_the_bulletin_list_holds_only_bulletins_that_are_served(
        bulletins: TestClient, tmp_path: Path) -> None:
    root = tmp_path / "bulletins"
    # A folder with metadata but no index.html (a copy cut short), and one whose metadata
    # names another period than its folder: neither is served, so neither is listed.
    broken = root / "2014Q1"
    (broken / "data").mkdir(parents=True)
    (broken / "data" / "metadata.json").write_text(
        (root / "2014Q2" / "data" / "metadata.json").read_text().replace("2014Q2", "2014Q1"))
    other = root / "2013Q4"
    (other / "data").mkdir(parents=True)
    (other / "index.html").write_text("x")
    (other / "data" / "metadata.json").write_text(
        (root / "2014Q2" / "data" / "metadata.json").read_text())
    resp = await bulletins.get("/v1/bulletins")
    listed = (await resp.json())["bulletins"]
    assert [b["period"] for b in listed] == ["2014Q2"]
    assert msgspec.json.decode(await resp.read(), type=Bulletins).bulletins[0].files.pdf == \
        "/v1/bulletins/2014Q2/bulletin.pdf"
    for item in listed:
        assert (await bulletins.get(item["url"])).status == 200


# --- query parameters -----------------------------------------------------------------------------


@pytest.mark.parametrize(("url", "parameter"), [
    ("/v1/compare?from=ITA&to=CHN&amount=", "amount"),
    ("/v1/compare?from=ITA&to=&amount=140", "to"),
    ("/v1/compare?from=&to=CHN&amount=140", "from"),
    ("/v1/compare?from=ITA&to=CHN&amount=140&period=", "period"),
    ("/v1/compare?from=ITA&to=CHN&amount=140&currency=", "currency"),
    ("/v1/compare?from=ITA&to=CHN&amount=140&payin=", "payin"),
    ("/v1/compare?from=ITA&to=CHN&amount=140&payout=", "payout"),
    ("/v1/corridors?limit=", "limit"),
    ("/v1/corridors?to=", "to"),
    ("/v1/corridors?from=", "from"),
    ("/v1/corridors?above=", "above"),
    ("/v1/corridors?region=", "region"),
    ("/v1/corridors?firm_type=", "firm_type"),
    ("/v1/corridors?amount=", "amount"),
    ("/v1/corridors?cursor=", "cursor"),
    ("/v1/corridors.csv?limit=", "limit"),
    ("/v1/corridors/ITA-CHN?period=", "period"),
    ("/v1/corridors/ITA-CHN?amount=", "amount"),
    ("/v1/corridors/ITA-CHN/history?limit=", "limit"),
    ("/v1/corridors/ITA-CHN/history?cursor=", "cursor"),
    ("/v1/indicators?period=", "period"),
    ("/v1/indicators?amount=", "amount"),
    ("/v1/postal/benchmark?period=", "period"),
    ("/v1/postal/benchmark?limit=", "limit"),
    ("/v1/postal/benchmark?cursor=", "cursor"),
    ("/v1/corridors?limit", "limit"),  # no "=" at all: an empty value too
    ("/v1/corridors?include=", "include"),
    ("/v1/compare?from=ITA&to=CHN&amount=140&include=", "include"),
])
async def test_an_empty_parameter_is_a_400_naming_it(api: TestClient, url: str,
                                                     parameter: str) -> None:
    resp = await api.get(url)
    assert resp.status == 400, await resp.text()
    body = await resp.json(content_type=None)
    problem(400, body, resp.headers)
    assert body["parameter"] == parameter
    assert "empty" in body["detail"] and parameter in body["detail"]


async def test_a_percent_encoded_include_is_read(api: TestClient) -> None:
    # A query without "include" in it is not parsed for it (an answer from memory needs no
    # parsing: publish.api.conventions.include_emulated, which reads the decoded query
    # string); a percent-encoded name still is.
    # encoded=True: yarl would otherwise decode "%69" before sending.
    resp = await api.get(URL("/v1/compare?from=ITA&to=CHN&amount=140&%69nclude=everything",
                             encoded=True))
    assert resp.status == 400, await resp.text()
    body = await resp.json(content_type=None)
    assert body["parameter"] == "include" and "'everything'" in body["detail"], body


async def test_the_document_forbids_empty_values(api: TestClient) -> None:
    # allowEmptyValue is false by default (OpenAPI 3.1); each string parameter says so too.
    for path, item in document()["paths"].items():
        if path == "/":
            continue  # the page's form sends empty boxes: empty is "not chosen" there
        for operation in item.values():
            for p in operation["parameters"]:
                if p["in"] != "query":
                    continue  # a bulletin's empty file path is its index.html
                assert not p.get("allowEmptyValue"), (path, p["name"])
                schema = p["schema"]
                if schema.get("type") == "string" and "pattern" not in schema \
                        and "enum" not in schema:
                    assert schema.get("minLength") == 1, (path, p["name"])


async def test_the_page_still_takes_its_forms_empty_boxes(api: TestClient) -> None:
    resp = await api.get("/?from=&to=&amount=")
    assert resp.status == 200, await resp.text()


async def test_admin_parameters_may_not_be_empty_either(bulletins: TestClient) -> None:
    for url, parameter in (("/v1/admin/collect?source=", "source"),
                           ("/v1/admin/bulletin?period=", "period")):
        resp = await bulletins.post(url, headers=AUTH)
        assert resp.status == 400, await resp.text()
        body = await resp.json(content_type=None)
        assert body["parameter"] == parameter and "empty" in body["detail"]


# --- the document's own content type -------------------------------------------------------------


async def test_openapi_json_is_declared_as_what_it_is_served_as(api: TestClient
                                                                ) -> None:
    resp = await api.get("/v1/openapi.json")
    assert resp.status == 200 and resp.content_type == "application/json"
    content = document()["paths"]["/v1/openapi.json"]["get"]["responses"]["200"]["content"]
    assert list(content) == ["application/json"]
    name = content["application/json"]["schema"]["$ref"].split("/")[-1]
    schema = document()["components"]["schemas"][name]
    from jsonschema import Draft202012Validator

    Draft202012Validator(schema).validate(await resp.json())


# --- admin collect --------------------------------------------------------------------------------


async def test_admin_collect_says_when_a_run_is_already_under_way(
        api: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SENDCOST_ADMIN_TOKEN", "s3cret")
    started, release = asyncio.Event(), asyncio.Event()
    runs = 0

    async def collect() -> None:
        nonlocal runs
        runs += 1
        started.set()
        await release.wait()

    scheduler = api.app[runtime.SCHEDULER]
    for source in ("busy-source", "idle-source"):
        scheduler.add_job(collect if source == "busy-source" else _nothing, "interval",
                          hours=24, id=f"collect:{source}", replace_existing=True,
                          max_instances=1)
        api.app[COLLECTION_JOBS][source] = CollectionJobs(source, f"collect:{source}")
    try:
        resp = await api.post("/v1/admin/collect?source=busy-source", headers=AUTH)
        assert resp.status == 202, await resp.text()
        await asyncio.wait_for(started.wait(), 10)
        # Under way: the scheduler would skip another run (max_instances): say so.
        resp = await api.post("/v1/admin/collect?source=busy-source", headers=AUTH)
        assert resp.status == 409, await resp.text()
        body = await resp.json(content_type=None)
        problem(409, body, resp.headers)
        assert body["jobs"] == ["collect:busy-source"]
        assert "already running" in body["detail"]
        declared("/v1/admin/collect", "post", 409, "application/problem+json")
        # Both asked for: the idle one is triggered, the busy one reported as running.
        resp = await api.post("/v1/admin/collect", headers=AUTH)
        assert resp.status == 202, await resp.text()
        body = await resp.json()
        assert "collect:idle-source" in body["jobs"]
        assert "collect:busy-source" not in body["jobs"]
        assert body["already_running"] == ["collect:busy-source"]
        await asyncio.sleep(0.3)
        assert runs == 1
        release.set()
        for _ in range(100):  # the run ends: it may be triggered again
            resp = await api.post("/v1/admin/collect?source=busy-source", headers=AUTH)
            if resp.status == 202:
                break
            await asyncio.sleep(0.05)
        assert resp.status == 202 and (await resp.json())["already_running"] == []
    finally:
        release.set()
        for source in ("busy-source", "idle-source"):
            scheduler.remove_job(f"collect:{source}")
            del api.app[COLLECTION_JOBS][source]


async def _nothing() -> None:
    return None


# --- /metrics without the database ----------------------------------------------------------------


@pytest.fixture
async def own_api(fresh_database: str) -> AsyncIterator[TestClient]:
    async with TestClient(TestServer(make_app(fresh_database))) as client:
        yield client


async def test_metrics_log_an_outage_once_and_its_end_once(
        own_api: TestClient, fresh_database: str, server_url: str,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="publish.api.operations")
    assert (await own_api.get("/metrics")).status == 200
    name = urlsplit(fresh_database).path.lstrip("/")
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        await admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                            "WHERE datname = $1", name)
        for _ in range(4):
            resp = await own_api.get("/metrics")
            assert resp.status == 200
        down = [r for r in caplog.records if r.name == "publish.api.operations"]
        assert len(down) == 1, [r.getMessage() for r in down]
        assert down[0].levelno == logging.WARNING and "unreachable" in down[0].getMessage()
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        for _ in range(3):
            assert (await own_api.get("/metrics")).status == 200
        back = [r for r in caplog.records if r.name == "publish.api.operations"][1:]
        assert len(back) == 1, [r.getMessage() for r in back]
        assert back[0].levelno == logging.INFO and "again" in back[0].getMessage()
    finally:
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        await admin.close()


# --- log lines ------------------------------------------------------------------------------------


@pytest.fixture
def root_logging() -> Iterator[logging.Logger]:
    """The root logger without handlers (pytest's are put back after the test)."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    yield root
    for handler in root.handlers:
        if handler not in saved[0]:
            handler.close()
    root.handlers, root.level = saved


def test_the_cli_escapes_control_characters_in_every_log_line(
        root_logging: logging.Logger, capsys: pytest.CaptureFixture[str]) -> None:
    root_logging.handlers = []  # pytest's capture handlers, added for the test's call
    cli.setup_logging(argparse.Namespace(verbose=False, quiet=False))
    assert root_logging.handlers
    log = logging.getLogger("publish.middleware")
    forged = "/v1/x\r\n2026-12-07 09:00:00,000 ERROR   sendcost: forged\x00\x1b[31m\u2028"
    log.warning("unhandled error on %s %s", "GET", forged)
    try:
        raise ValueError(f"bad path {forged}")
    except ValueError:
        log.exception("failed on %s", forged)
    logging.getLogger("aiohttp.server").info("%s", forged)
    err = capsys.readouterr().err
    lines = err.splitlines()
    # Every line is a record's first line (time first) or an indented traceback line.
    stamp = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} ")
    assert all(stamp.match(line) or line.startswith("  ") for line in lines), lines
    assert sum(bool(stamp.match(line)) for line in lines) == 3, lines
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f\x85\u2028\u2029]", err)
    assert lines[0].endswith("unhandled error on GET /v1/x\\r\\n2026-12-07 09:00:00,000 "
                             "ERROR   sendcost: forged\\x00\\x1b[31m\\u2028")
    assert "  Traceback (most recent call last):" in lines
    # In a traceback a line break is the traceback's or the message's, which cannot be told
    # apart: it stays, but the line after it is indented as the traceback's are.
    at = lines.index("  ValueError: bad path /v1/x\\r")
    assert lines[at + 1] == "  2026-12-07 09:00:00,000 ERROR   sendcost: forged\\x00\\x1b[31m" \
                            "\\u2028"


# --- the configuration file -----------------------------------------------------------------------


def test_a_config_with_bytes_that_are_not_utf8_is_a_clear_error(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "config.toml"
    path.write_bytes(b'[service]\nlog_level = "INFO"\n# caf\xe9\n')
    assert cli.main(["db", "status", "--config", str(path)]) == cli.EXIT_ERROR
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert str(path) in err and "UTF-8" in err
    assert "offset 34" in err and "line 3, column 6" in err, err


# --- the bulletin's 404 ---------------------------------------------------------------------------


def test_the_bulletin_404_lists_only_periods_it_would_publish() -> None:
    import polars as pl

    from corridors.errors import NoData
    from publish.bulletin import compute_bulletin, load_rpw

    quotes, generated_from = load_rpw()
    # 2014Q1 keeps its USD 500 quotes only; 2013Q4's USD 200 quotes all have a stale
    # reference rate (left out of every average): neither has a bulletin to publish.
    quotes = quotes.filter(~((pl.col("period") == "2014Q1") & (pl.col("amount_usd") == 200)))
    quotes = quotes.with_columns(reference_stale=pl.when(
        (pl.col("period") == "2013Q4") & (pl.col("amount_usd") == 200)).then(True)
        .otherwise(pl.col("reference_stale")))
    with pytest.raises(NoData) as refused:
        compute_bulletin(quotes, "1999Q1", generated_from=generated_from)
    listed = re.search(r": ([^:)]*)\)$", str(refused.value))
    assert listed is not None, str(refused.value)
    assert listed.group(1).split(", ") == ["2011Q1", "2011Q3", "2012Q1", "2012Q3", "2013Q1",
                                           "2013Q2", "2013Q3", "2014Q2"]
    for period in ("2014Q1", "2013Q4"):
        with pytest.raises(NoData):
            compute_bulletin(quotes, period, generated_from=generated_from)


def test_a_data_dir_with_a_nul_is_a_clear_error(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SENDCOST_DATA_DIR", raising=False)
    monkeypatch.delenv("DATABASE_URL", raising=False)  # the embedded database's folder
    path = tmp_path / "config.toml"
    path.write_text('[service]\ndata_dir = "/tmp/x\\u0000y"\n', encoding="utf-8")
    assert cli.main(["db", "status", "--config", str(path)]) == cli.EXIT_ERROR
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert f"{path}: service.data_dir: a path cannot hold a NUL character" in err


@pytest.mark.parametrize("argv", [["serve", "--port", "70000"], ["sandbox", "--port", "-1"],
                                  ["serve", "--port", "http"]])
def test_a_port_out_of_range_is_a_usage_error(argv: list[str],
                                              capsys: pytest.CaptureFixture[str]) -> None:
    # It ended in OverflowError from bind(), after the database had been started.
    with pytest.raises(SystemExit) as stopped:
        cli.build_parser().parse_args(argv)
    assert stopped.value.code == cli.EXIT_USAGE
    assert "--port: expected a port number from 0 to 65535" in capsys.readouterr().err
