"""The emulator over real HTTP on 127.0.0.1: both protocols, paging, auth, params."""

from __future__ import annotations

import asyncio
import datetime as dt

import aiohttp
import polars as pl
import pytest

from gogooku3.emulator.testing import running_emulator, small_config
from gogooku3.jquants.datasets import DATASETS
from gogooku3.jquants.normalize import to_frame

pytestmark = pytest.mark.integration

DAY = dt.date(2024, 2, 14)


@pytest.fixture(scope="module")
def emu():
    with running_emulator(small_config(codes=80, page_size=17, start=dt.date(2023, 10, 1))) as handle:
        yield handle


async def _id_token(session: aiohttp.ClientSession, emu) -> str:
    async with session.post(
        f"{emu.base_url_v1}/token/auth_user", json={"mailaddress": emu.email, "password": emu.password}
    ) as r:
        assert r.status == 200
        refresh = (await r.json())["refreshToken"]
    async with session.post(f"{emu.base_url_v1}/token/auth_refresh", params={"refreshtoken": refresh}) as r:
        assert r.status == 200
        return (await r.json())["idToken"]


async def _fetch_all(
    session, emu, version: str, name: str, params: dict, headers: dict
) -> tuple[list[dict], int]:
    ds = DATASETS[name]
    base = emu.base_url_v1 if version == "v1" else emu.base_url_v2
    rows: list[dict] = []
    pages = 0
    query = dict(params)
    while True:
        async with session.get(base + ds.path(version), params=query, headers=headers) as r:
            assert r.status == 200, await r.text()
            body = await r.json()
        pages += 1
        rows.extend(body[ds.data_key(version)])
        if "pagination_key" not in body:
            return rows, pages
        query["pagination_key"] = body["pagination_key"]


def _canonical(rows: list[dict], name: str, version: str) -> pl.DataFrame:
    """Minimal wire -> canonical conversion, so the test does not depend on the client."""
    ds = DATASETS[name]
    cols = {}
    for f in ds.fields:
        parent = f.parent_name(version)
        if parent is None:
            values = [row[f.source_name(version)] for row in rows]
        else:  # a flag inside an object (the margin alerts' publish reasons)
            values = [row[parent][f.source_name(version)] for row in rows]
        if f.undecided is not None:
            values = [None if v == f.undecided else v for v in values]
        if f.dtype == pl.Date:
            values = [dt.date.fromisoformat(v) if v else None for v in values]
        elif f.dtype == pl.Boolean:
            values = [None if v is None else v == "1" for v in values]
        elif f.dtype == pl.Float64:
            values = [None if v in ("", None) else float(v) for v in values]
        cols[f.name] = pl.Series(f.name, values, dtype=f.dtype)
    return pl.DataFrame(cols)


#: (dataset, query, ground truth). ``ids`` below number repeated datasets.
CASES = [
    ("listed_info", {"date": "2024-02-14"}, lambda m: m.frame("listed_info", DAY)),
    ("daily_quotes", {"date": "20240214"}, lambda m: m.frame("daily_quotes", DAY)),
    ("statements", {"date": "2024-02-14"}, lambda m: m.frame("statements", DAY)),
    (
        "trades_spec",
        {"from": "2023-10-01", "to": "2024-03-31"},
        lambda m: m.trades_spec(dt.date(2023, 10, 1)),
    ),
    ("topix", {"from": "2024-01-01", "to": "2024-02-14"}, lambda m: m.topix(dt.date(2024, 1, 1), DAY)),
    (
        "trading_calendar",
        {"from": "2024-01-01", "to": "2024-02-14"},
        lambda m: m.trading_calendar(dt.date(2024, 1, 1), DAY),
    ),
    ("indices", {"date": "2024-02-14"}, lambda m: m.frame("indices", DAY)),
    (
        "indices",
        {"code": "0050", "from": "2024-01-01", "to": "2024-02-14"},
        lambda m: m.derived("indices", dt.date(2024, 1, 1), DAY, code="0050"),
    ),
    ("short_selling", {"date": "2024-02-14"}, lambda m: m.frame("short_selling", DAY)),
    (
        "weekly_margin_interest",
        {"date": "2024-02-09"},
        lambda m: m.frame("weekly_margin_interest", dt.date(2024, 2, 9)),
    ),
    (
        "weekly_margin_interest",
        {"code": "FIRST_MARGIN_CODE", "from": "2023-11-01"},
        lambda m: m.derived("weekly_margin_interest", dt.date(2023, 11, 1), code=_first_margin_code(m)),
    ),
    ("earnings_calendar", {}, lambda m: m.derived("earnings_calendar")),
    ("dividends", {"date": "2023-11-06"}, lambda m: m.frame("dividends", dt.date(2023, 11, 6))),
    ("futures", {"date": "2024-02-14"}, lambda m: m.frame("futures", DAY)),
    ("index_option", {"date": "20240214"}, lambda m: m.frame("index_option", DAY)),
    ("daily_margin_interest", {"date": "2024-02-14"}, lambda m: m.frame("daily_margin_interest", DAY)),
    ("short_selling_positions", {"date": "2024-02-14"}, lambda m: m.frame("short_selling_positions", DAY)),
    (
        "dividends",
        {"code": "FIRST_DIVIDEND_CODE", "from": "2023-01-01", "to": "2024-02-14"},
        lambda m: m.derived("dividends", dt.date(2023, 1, 1), DAY, code=_first_dividend_code(m)),
    ),
]


def _first_dividend_code(market) -> str:
    return market.derived("dividends").get_column("Code")[0]


def _first_margin_code(market) -> str:
    return market.derived("weekly_margin_interest").get_column("Code")[0]


@pytest.mark.parametrize("version", ["v1", "v2"])
@pytest.mark.parametrize(("name", "params", "truth"), CASES, ids=[f"{c[0]}-{k}" for k, c in enumerate(CASES)])
async def test_paged_answers_concatenate_to_the_ground_truth(emu, version, name, params, truth):
    expected = truth(emu.market)
    if params.get("code") == "FIRST_MARGIN_CODE":
        params = params | {"code": _first_margin_code(emu.market)}
    if params.get("code") == "FIRST_DIVIDEND_CODE":
        params = params | {"code": _first_dividend_code(emu.market)}
    # the dataset's own name for the partition date (the short-sale reports: disclosed_date/disc_date)
    params = {DATASETS[name].date_param_name(version) if k == "date" else k: v for k, v in params.items()}
    assert expected.height > 0
    async with aiohttp.ClientSession() as session:
        if version == "v1":
            headers = {"Authorization": f"Bearer {await _id_token(session, emu)}"}
        else:
            headers = {"x-api-key": emu.api_key}
        rows, pages = await _fetch_all(session, emu, version, name, params, headers)
    ds = DATASETS[name]
    assert set(rows[0]) == {f.parent_name(version) or f.source_name(version) for f in ds.fields}
    got = _canonical(rows, name, version)
    assert got.equals(expected)
    assert pages == -(-expected.height // emu.config.page_size)


async def test_wire_formats(emu):
    async with aiohttp.ClientSession() as session:
        headers = {"x-api-key": emu.api_key}
        quotes, _ = await _fetch_all(session, emu, "v2", "daily_quotes", {"date": "2024-02-14"}, headers)
        statements, _ = await _fetch_all(session, emu, "v2", "statements", {"date": "2024-02-14"}, headers)
        cal, _ = await _fetch_all(
            session, emu, "v2", "trading_calendar", {"from": "2024-02-10", "to": "20240212"}, headers
        )
        v1_statements, _ = await _fetch_all(
            session,
            emu,
            "v1",
            "statements",
            {"date": "2024-02-14"},
            {"Authorization": f"Bearer {await _id_token(session, emu)}"},
        )
    q = quotes[0]
    assert q["Date"] == "2024-02-14" and isinstance(q["Code"], str) and len(q["Code"]) == 5
    assert q["UL"] in ("0", "1") and q["LL"] in ("0", "1")
    assert all(isinstance(r["Vo"], float | int) for r in quotes)
    assert all(r["O"] is None or isinstance(r["O"], float | int) for r in quotes)
    assert all(isinstance(v, str) for row in statements for v in row.values())
    assert statements[0]["DiscDate"] == "2024-02-14"
    assert "LocalCode" in v1_statements[0] and "Code" not in v1_statements[0]
    assert [(c["Date"], c["HolDiv"]) for c in cal] == [
        ("2024-02-10", "0"),
        ("2024-02-11", "0"),
        ("2024-02-12", "0"),
    ]


@pytest.mark.parametrize("version", ["v1", "v2"])
async def test_an_undecided_dividend_is_served_as_a_dash_and_read_back_as_null(emu, version):
    truth = emu.market.derived("dividends")
    undecided = truth.filter(pl.col("GrossDividendRate").is_null()).row(0, named=True)
    day = undecided["AnnouncementDate"]
    async with aiohttp.ClientSession() as session:
        if version == "v1":
            headers = {"Authorization": f"Bearer {await _id_token(session, emu)}"}
        else:
            headers = {"x-api-key": emu.api_key}
        rows, _ = await _fetch_all(session, emu, version, "dividends", {"date": day.isoformat()}, headers)
    ds = DATASETS["dividends"]
    rate, ref = ds.to_source_name(version, "GrossDividendRate"), ds.to_source_name(version, "ReferenceNumber")
    served = {r[ref]: r[rate] for r in rows}
    assert served[undecided["ReferenceNumber"]] == "-"
    assert all(v == "-" or float(v) >= 0 for v in served.values())
    frame = to_frame(ds, version, rows)
    assert frame.equals(truth.filter(pl.col("AnnouncementDate") == day))


async def test_daily_quotes_by_code_with_range_and_four_digit_code(emu):
    code = emu.market.codes[3]
    start, end = dt.date(2024, 1, 10), dt.date(2024, 2, 20)
    expected = emu.market.daily_quotes(code, start, end)
    async with aiohttp.ClientSession() as session:
        headers = {"x-api-key": emu.api_key}
        rows, _ = await _fetch_all(
            session,
            emu,
            "v2",
            "daily_quotes",
            {"code": code[:4], "from": "20240110", "to": "2024-02-20"},
            headers,
        )
        one, _ = await _fetch_all(
            session, emu, "v2", "daily_quotes", {"code": code, "date": "2024-02-14"}, headers
        )
    assert _canonical(rows, "daily_quotes", "v2").equals(expected)
    assert [r["Date"] for r in one] == ["2024-02-14"]


async def test_trades_spec_section_filter(emu):
    async with aiohttp.ClientSession() as session:
        rows, _ = await _fetch_all(
            session, emu, "v2", "trades_spec", {"section": "TSEPrime"}, {"x-api-key": emu.api_key}
        )
    assert rows and {r["Section"] for r in rows} == {"TSEPrime"}
    assert len(rows) == emu.market.trades_spec(section="TSEPrime").height


@pytest.mark.parametrize("version", ["v1", "v2"])
async def test_short_selling_sector_filter_in_each_protocols_spelling(emu, version):
    param = {"v1": "sector33code", "v2": "s33"}[version]
    async with aiohttp.ClientSession() as session:
        if version == "v1":
            headers = {"Authorization": f"Bearer {await _id_token(session, emu)}"}
        else:
            headers = {"x-api-key": emu.api_key}
        rows, _ = await _fetch_all(session, emu, version, "short_selling", {param: "3650"}, headers)
        other = "s33" if version == "v1" else "sector33code"
        async with session.get(
            (emu.base_url_v1 if version == "v1" else emu.base_url_v2)
            + DATASETS["short_selling"].path(version),
            params={other: "3650"},
            headers=headers,
        ) as r:
            assert r.status == 400 and other in (await r.json())["message"]
    got = _canonical(rows, "short_selling", version)
    assert got.height == emu.market.derived("short_selling", sector="3650").height > 20
    assert got.equals(emu.market.derived("short_selling", sector="3650"))


@pytest.mark.parametrize(
    ("path", "params", "needle"),
    [
        ("/markets/short-ratio", {}, "'date','s33'"),
        ("/markets/short-ratio", {"s33": "0040"}, "s33"),
        ("/indices/bars/daily", {"code": "00401"}, "code"),
        ("/indices/bars/daily", {"from": "2024-01-01"}, "'date','code'"),
        ("/markets/margin-interest", {}, "'date','code'"),
        ("/equities/bars/daily", {}, "'date','code'"),
        ("/equities/bars/daily", {"date": "2024-13-01"}, "date"),
        ("/equities/bars/daily", {"date": "2024-02-14", "colour": "red"}, "colour"),
        ("/equities/bars/daily", {"code": "12"}, "code"),
        ("/equities/investor-types", {"section": "TSE9th"}, "section"),
        ("/indices/bars/daily/topix", {"from": "2024-02-01", "to": "2024-01-01"}, "from"),
        ("/markets/calendar", {"hol_div": "7"}, "hol_div"),
        ("/equities/bars/daily", {"date": "2024-02-14", "pagination_key": "bogus"}, "pagination_key"),
    ],
)
async def test_bad_params_are_400_naming_the_problem(emu, path, params, needle):
    async with aiohttp.ClientSession() as session:
        async with session.get(
            emu.base_url_v2 + path, params=params, headers={"x-api-key": emu.api_key}
        ) as r:
            assert r.status == 400
            assert needle in (await r.json())["message"]


async def test_pagination_key_of_another_query_is_rejected(emu):
    headers = {"x-api-key": emu.api_key}
    async with aiohttp.ClientSession() as session:
        url = emu.base_url_v2 + "/equities/bars/daily"
        async with session.get(url, params={"date": "2024-02-14"}, headers=headers) as r:
            key = (await r.json())["pagination_key"]
        async with session.get(url, params={"date": "2024-02-14"}, headers=headers) as r:
            assert (await r.json())["pagination_key"] == key  # deterministic
        async with session.get(
            url, params={"date": "2024-02-15", "pagination_key": key}, headers=headers
        ) as r:
            assert r.status == 400


async def test_v2_auth_errors(emu):
    async with aiohttp.ClientSession() as session:
        url = emu.base_url_v2 + "/equities/bars/daily"
        async with session.get(url, params={"date": "2024-02-14"}) as r:
            assert r.status == 401 and "message" in await r.json()
        async with session.get(url, params={"date": "2024-02-14"}, headers={"x-api-key": "wrong"}) as r:
            assert r.status == 401 and "message" in await r.json()


@pytest.mark.parametrize("key", ["kéy", "キー", "emulator-api-keé"])
async def test_v2_non_ascii_api_key_is_401_not_500(emu, key):
    """A non-ASCII key is a wrong key (401), not a server error: a 500 would make clients retry."""
    async with aiohttp.ClientSession() as session:
        url = emu.base_url_v2 + "/equities/bars/daily"
        async with session.get(url, params={"date": "2024-02-14"}, headers={"x-api-key": key}) as r:
            assert (r.status, await r.json()) == (401, {"message": "Invalid API key"})


async def test_v2_undecodable_api_key_bytes_are_401(emu):
    """Header bytes that are not UTF-8 (they reach the handler as lone surrogates) are a wrong key too."""
    reader, writer = await asyncio.open_connection(emu.host, emu.port)
    writer.write(
        b"GET /v2/indices/bars/daily/topix HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        b"x-api-key: \xff\xfekey\xe9\r\n\r\n"
    )
    answer = await reader.read()
    writer.close()
    status_line, _, body = answer.partition(b"\r\n\r\n")
    assert status_line.startswith(b"HTTP/1.1 401 ") and b"Invalid API key" in body


async def test_v1_non_ascii_credentials_are_refused_not_500(emu):
    async with aiohttp.ClientSession() as session:
        auth_user = f"{emu.base_url_v1}/token/auth_user"
        for body in (
            {"mailaddress": "クオンツ@example.com", "password": emu.password},
            {"mailaddress": emu.email, "password": "pässwörd"},
            {"mailaddress": "ü", "password": "ü"},
        ):
            async with session.post(auth_user, json=body) as r:
                assert r.status == 400 and "incorrect" in (await r.json())["message"], body
        # a lone surrogate, which JSON allows and UTF-8 does not
        raw = '{"mailaddress": "\\ud800", "password": "x"}'
        async with session.post(auth_user, data=raw, headers={"Content-Type": "application/json"}) as r:
            assert r.status == 400 and "incorrect" in (await r.json())["message"]
        refresh = f"{emu.base_url_v1}/token/auth_refresh"
        async with session.post(refresh, params={"refreshtoken": "トークン"}) as r:
            assert r.status == 400 and "incorrect or expired" in (await r.json())["message"]
        async with session.get(
            emu.base_url_v1 + "/prices/daily_quotes",
            params={"date": "2024-02-14"},
            headers={"Authorization": "Bearer トークン"},
        ) as r:
            assert (r.status, await r.json()) == (
                401,
                {"message": "The incoming token is invalid or expired."},
            )


async def test_v1_token_flow_and_errors(emu):
    async with aiohttp.ClientSession() as session:
        url = emu.base_url_v1 + "/prices/daily_quotes"
        async with session.post(
            f"{emu.base_url_v1}/token/auth_user", json={"mailaddress": emu.email, "password": "nope"}
        ) as r:
            assert r.status == 400 and "incorrect" in (await r.json())["message"]
        async with session.post(
            f"{emu.base_url_v1}/token/auth_refresh", params={"refreshtoken": "nope"}
        ) as r:
            assert r.status == 400
        async with session.get(
            url, params={"date": "2024-02-14"}, headers={"Authorization": "Bearer nope"}
        ) as r:
            assert r.status == 401
            assert (await r.json())["message"] == "The incoming token is invalid or expired."
        token = await _id_token(session, emu)
        headers = {"Authorization": f"Bearer {token}"}
        async with session.get(url, params={"date": "2024-02-14"}, headers=headers) as r:
            assert r.status == 200 and "daily_quotes" in await r.json()
        emu.expire_id_tokens()
        async with session.get(url, params={"date": "2024-02-14"}, headers=headers) as r:
            assert r.status == 401
        # the api key is no credential for v1
        async with session.get(url, params={"date": "2024-02-14"}, headers={"x-api-key": emu.api_key}) as r:
            assert r.status == 401


async def test_id_token_lifetime_is_configurable():
    cfg = small_config(codes=10, id_token_ttl_s=0.05)
    with running_emulator(cfg) as short:
        async with aiohttp.ClientSession() as session:
            token = await _id_token(session, short)
            import asyncio

            await asyncio.sleep(0.1)
            async with session.get(
                short.base_url_v1 + "/indices/topix", headers={"Authorization": f"Bearer {token}"}
            ) as r:
                assert r.status == 401


async def test_health_and_stats_endpoints(emu):
    emu.reset_stats()
    async with aiohttp.ClientSession() as session:
        await _fetch_all(session, emu, "v2", "topix", {}, {"x-api-key": emu.api_key})
        async with session.get(emu.base_url + "/health") as r:
            assert r.status == 200 and (await r.json())["status"] == "ok"
        async with session.get(emu.base_url + "/_stats") as r:
            stats = await r.json()
    pages = -(-emu.market.topix().height // emu.config.page_size)
    assert stats["requests"]["/v2/indices/bars/daily/topix"] == pages
    assert stats["pages_served"] == pages
    assert stats["rows_served"] == emu.market.topix().height
    assert emu.stats["pages_served"] == pages


@pytest.mark.parametrize(
    ("version", "disclosed", "calculated"),
    [("v1", "disclosed_date", "calculated_date"), ("v2", "disc_date", "calc_date")],
)
def test_short_sale_reports_are_asked_for_by_each_protocols_own_date_names(
    emu, version, disclosed, calculated
):
    from gogooku3.emulator.server import BadRequest, query_frame

    ds, truth = DATASETS["short_selling_positions"], emu.market.derived("short_selling_positions")
    row = truth.row(0, named=True)
    by_disclosure = query_frame(emu.market, ds, version, {disclosed: row["DisclosedDate"].isoformat()})
    assert by_disclosure.equals(truth.filter(pl.col("DisclosedDate") == row["DisclosedDate"]))
    by_calculation = query_frame(emu.market, ds, version, {calculated: row["CalculatedDate"].isoformat()})
    assert by_calculation.equals(truth.filter(pl.col("CalculatedDate") == row["CalculatedDate"]))
    with pytest.raises(BadRequest, match="unknown parameter"):
        query_frame(emu.market, ds, version, {"date": row["DisclosedDate"].isoformat()})
