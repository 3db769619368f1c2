"""The J-Quants emulator: an aiohttp app serving the synthetic market over v1 and v2.

Protocols (paths and field names from :mod:`gogooku3.jquants.datasets`):

* **v2** under ``/v2``: header ``x-api-key``; answers ``{"data": [...], "pagination_key": "..."}``
  with short field names; a missing or wrong key -> 401 ``{"message": ...}``.
* **v1** under ``/v1``: ``POST /v1/token/auth_user`` with JSON ``{"mailaddress", "password"}``
  -> ``{"refreshToken"}`` (wrong credentials or body: 400); ``POST
  /v1/token/auth_refresh?refreshtoken=...`` -> ``{"idToken"}`` (missing, unknown or expired
  refresh token: 400); data endpoints need ``Authorization: Bearer <idToken>`` (missing,
  invalid or expired: 401 ``{"message": "The incoming token is invalid or expired."}``) and
  answer ``{"<dataset key>": [...], "pagination_key": "..."}`` with long field names.

Queries (dates as ``YYYY-MM-DD`` or ``YYYYMMDD``; codes 4 or 5 digits): listed_info ``code``,
``date`` (default: the market's end date); daily_quotes ``date`` (whole market) or ``code`` with
optional ``from``/``to`` (and/or ``date``); statements ``date`` and/or ``code``; trades_spec
optional ``section``, ``from``/``to`` on PublishedDate; topix ``from``/``to``; trading calendar
``from``/``to`` (default: the market's first day through a year past its last) and
``holidaydivision`` (v1) / ``hol_div`` (v2); indices ``date`` or ``code``
(an index code, e.g. ``0040``) with optional ``from``/``to``; short_selling ``date`` (or
``from``/``to``) and/or ``sector33code`` (v1) / ``s33`` (v2); weekly_margin_interest ``date``
(the record date) or ``code`` with optional ``from``/``to``; earnings_calendar optional ``date``
(the publication date: an extension, the real endpoint answers only the next business day's
schedule) and ``code``; dividends ``date`` (the announcement date) or ``code`` with optional
``from``/``to``; futures and index_option ``date``; daily_margin_interest ``date`` (the publication
date) or ``code`` with optional ``from``/``to``; short_selling_positions ``code``,
``disclosed_date``/``calculated_date`` (v1) or ``disc_date``/``calc_date`` (v2). Unknown or malformed parameters
-> 400 ``{"message": ...}`` naming them. Rows come in the order of :class:`Market`'s frames.

Paging: ``page_size`` rows per page; ``pagination_key`` is an opaque, deterministic token
(offset + HMAC of the query), absent on the last page; a key that does not belong to the query
-> 400.

Rate limit: per credential (the v2 API key / the v1 account) on data endpoints, see
:mod:`gogooku3.emulator.ratelimit`; refused -> 429 with ``Retry-After`` and ``{"message"}``.
Token endpoints, ``/health`` and ``/_stats`` are not limited.

Faults (data endpoints, after auth and rate limit, drawn with probability ``fault_rate``):
``429`` (with Retry-After), ``5xx`` (500/502/503), ``drop`` (connection closed without an
answer), ``malformed`` (200 with invalid JSON or without the data key), ``token_expiry`` (v1
only: the id token is revoked and 401 returned, forcing a refresh). The draw is a hash of
(fault_seed, method, path, query, attempt number of that exact request), so runs are
reproducible whatever the arrival order; no request gets more than ``max_consecutive_faults``
faults in a row. Faults never change data: a retry gets the right page.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import hmac
import json
import logging
import os
import secrets
import struct
import threading
import time
from collections import OrderedDict, defaultdict
from pathlib import Path
from typing import Any

import polars as pl
from aiohttp import web

from gogooku3.calendar import parse_date
from gogooku3.devtools.ports import write_port_file
from gogooku3.emulator.config import FAULT_KINDS, EmulatorConfig
from gogooku3.emulator.ratelimit import SlidingWindowLimiter, retry_after_header
from gogooku3.emulator.wire import to_wire
from gogooku3.jquants.datasets import (
    DATASETS,
    SECTIONS_BEFORE_2022,
    SECTIONS_FROM_2022,
    SECTOR_INDEX_CODES,
    ApiVersion,
    Dataset,
)
from gogooku3.market import Market, generate_market
from gogooku3.market.market import CALENDAR_AHEAD_DAYS, DERIVED_DATASETS

__all__ = ["EmulatorConfig", "FAULT_KINDS", "ListenError", "Stats", "create_app", "serve_forever"]

log = logging.getLogger(__name__)

INVALID_TOKEN = "The incoming token is invalid or expired."
_CALENDAR_DIVISION_PARAM = {"v1": "holidaydivision", "v2": "hol_div"}
_ALLOWED: dict[str, set[str]] = {
    "listed_info": {"code", "date"},
    "daily_quotes": {"code", "date", "from", "to"},
    "statements": {"code", "date"},
    "trades_spec": {"section", "from", "to"},
    "topix": {"from", "to"},
    "trading_calendar": {"from", "to"},
    "indices": {"code", "date", "from", "to"},
    "short_selling": {"date", "from", "to"},
    "weekly_margin_interest": {"code", "date", "from", "to"},
    "earnings_calendar": {"code", "date"},
    "dividends": {"code", "date", "from", "to"},
    "futures": {"date"},
    "index_option": {"date"},
    "daily_margin_interest": {"code", "date", "from", "to"},
    "short_selling_positions": {"code"},  # + the disclosure and calculation dates, per protocol
}
#: short_selling's sector filter, as each protocol spells it.
_SECTOR_PARAM = {"v1": "sector33code", "v2": "s33"}
#: short_selling_positions' calculation-date filter, as each protocol spells it.
_CALCULATED_PARAM = {"v1": "calculated_date", "v2": "calc_date"}
_SECTIONS = set(SECTIONS_BEFORE_2022) | set(SECTIONS_FROM_2022)
_MAX_CALENDAR_DAYS = 366 * 30


class BadRequest(Exception):
    """A client error; the message is returned as ``{"message": ...}`` with status 400."""


class Stats:
    """Thread-safe counters of what the emulator did (snapshot with :meth:`snapshot`)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._requests: dict[str, int] = defaultdict(int)
            self._responses: dict[str, int] = defaultdict(int)
            self._faults: dict[str, int] = defaultdict(int)
            self._rate_limited = 0
            self._pages = 0
            self._rows = 0
            self._started = time.time()

    def request(self, path: str) -> None:
        with self._lock:
            self._requests[path] += 1

    def response(self, status: int) -> None:
        with self._lock:
            self._responses[str(status)] += 1

    def fault(self, kind: str) -> None:
        with self._lock:
            self._faults[kind] += 1

    def rate_limited(self) -> None:
        with self._lock:
            self._rate_limited += 1

    def page(self, rows: int) -> None:
        with self._lock:
            self._pages += 1
            self._rows += rows

    def snapshot(self) -> dict[str, Any]:
        """``requests`` per path, ``requests_total``, ``responses`` per status, ``rate_limited``
        (429s from the rate limit), ``faults`` per kind, ``faults_total``, ``pages_served`` and
        ``rows_served`` (200 data pages), ``since`` (epoch seconds of the last reset)."""
        with self._lock:
            return {
                "requests": dict(self._requests),
                "requests_total": sum(self._requests.values()),
                "responses": dict(self._responses),
                "rate_limited": self._rate_limited,
                "faults": dict(self._faults),
                "faults_total": sum(self._faults.values()),
                "pages_served": self._pages,
                "rows_served": self._rows,
                "since": self._started,
            }


class _State:
    """Mutable server state; only touched on the server's event loop (Stats is thread-safe)."""

    def __init__(self, cfg: EmulatorConfig, market: Market) -> None:
        self.cfg = cfg
        self.market = market
        self.stats = Stats()
        self.limiter = SlidingWindowLimiter(cfg.limit_per_minute)
        self.refresh_tokens: dict[str, tuple[str, float]] = {}
        self.id_tokens: dict[str, tuple[str, float]] = {}
        self.attempts: dict[tuple, int] = defaultdict(int)
        self.consecutive: dict[tuple, int] = defaultdict(int)
        self.cache: OrderedDict[tuple, list[dict]] = OrderedDict()
        self._secret = hashlib.sha256(f"gogooku3-emulator-{cfg.fault_seed}".encode()).digest()

    # ---- paging keys
    def page_key(self, path: str, query: str, offset: int) -> str:
        sig = hmac.new(self._secret, f"{path}?{query}#{offset}".encode(), hashlib.sha256).hexdigest()[:16]
        return base64.urlsafe_b64encode(f"{offset}.{sig}".encode()).decode().rstrip("=")

    def page_offset(self, path: str, query: str, key: str, total: int) -> int:
        try:
            raw = base64.urlsafe_b64decode(key + "=" * (-len(key) % 4)).decode()
            offset_text, sig = raw.split(".", 1)
            offset = int(offset_text)
        except (ValueError, UnicodeDecodeError):
            raise BadRequest("invalid pagination_key") from None
        if not (0 < offset < total) or not hmac.compare_digest(self.page_key(path, query, offset), key):
            raise BadRequest("invalid pagination_key (it does not belong to this query)")
        return offset

    # ---- fault draws
    def _uniform(self, *parts: object) -> float:
        digest = hashlib.sha256(repr((self.cfg.fault_seed, *parts)).encode()).digest()
        return struct.unpack(">Q", digest[:8])[0] / 2.0**64

    def draw_fault(self, version: ApiVersion, request_key: tuple) -> tuple[str, float] | None:
        cfg = self.cfg
        kinds = [k for k in cfg.faults if version == "v1" or k != "token_expiry"]
        attempt = self.attempts[request_key]
        self.attempts[request_key] += 1
        if not kinds or cfg.fault_rate <= 0 or self.consecutive[request_key] >= cfg.max_consecutive_faults:
            self.consecutive[request_key] = 0
            return None
        if self._uniform(request_key, attempt, "fault?") >= cfg.fault_rate:
            self.consecutive[request_key] = 0
            return None
        self.consecutive[request_key] += 1
        kind = kinds[int(self._uniform(request_key, attempt, "kind") * len(kinds))]
        return kind, self._uniform(request_key, attempt, "variant")

    # ---- rows
    def rows(self, ds: Dataset, version: ApiVersion, params: dict[str, str], query: str) -> list[dict]:
        key = (ds.name, version, query)
        hit = self.cache.get(key)
        if hit is not None:
            self.cache.move_to_end(key)
            return hit
        frame = query_frame(self.market, ds, version, params)
        rows = to_wire(frame, ds, version)
        self.cache[key] = rows
        if len(self.cache) > _CACHE_ENTRIES:
            self.cache.popitem(last=False)
        return rows


STATE: web.AppKey[_State] = web.AppKey("state", _State)
#: Queries whose wire rows are kept (a whole-market day is paged over several requests).
_CACHE_ENTRIES = 16


def _date_param(params: dict[str, str], name: str) -> dt.date | None:
    raw = params.get(name)
    if raw is None or raw == "":
        return None
    try:
        return parse_date(raw)
    except ValueError:
        raise BadRequest(f"invalid '{name}' parameter {raw!r}: expected YYYY-MM-DD or YYYYMMDD") from None


def _code_param(params: dict[str, str]) -> str | None:
    raw = params.get("code")
    if raw is None or raw == "":
        return None
    if not raw.isascii() or not raw.isalnum() or len(raw) not in (4, 5):
        raise BadRequest(f"invalid 'code' parameter {raw!r}: expected a 4- or 5-character code")
    return raw + "0" if len(raw) == 4 else raw


def query_frame(market: Market, ds: Dataset, version: ApiVersion, params: dict[str, str]) -> pl.DataFrame:
    """The canonical rows a query asks for (validating it; BadRequest names what is wrong)."""
    allowed = set(_ALLOWED[ds.name])
    if ds.name == "trading_calendar":
        allowed.add(_CALENDAR_DIVISION_PARAM[version])
    if ds.name == "short_selling":
        allowed.add(_SECTOR_PARAM[version])
    if ds.date_param_name(version) != "date":
        allowed.add(ds.date_param_name(version))
    if ds.name == "short_selling_positions":
        allowed.add(_CALCULATED_PARAM[version])
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise BadRequest(f"unknown parameter(s) {', '.join(unknown)} for {ds.path(version)}")
    start, end = _date_param(params, "from"), _date_param(params, "to")
    if start and end and start > end:
        raise BadRequest(f"'from' ({start}) is after 'to' ({end})")
    day = _date_param(params, ds.date_param_name(version))
    if ds.name == "listed_info":
        code = _code_param(params)
        return market.listed_info(day or market.end, code)
    if ds.name == "daily_quotes":
        code = _code_param(params)
        if code is None:
            if day is None:
                raise BadRequest("This API requires at least 1 parameter as follows; 'date','code'.")
            if start or end:
                raise BadRequest("'from'/'to' need 'code'; use 'date' for the whole market")
            return market.frame("daily_quotes", day)
        if code not in market.codes:
            return market.frame("daily_quotes", dt.date(1900, 1, 1))
        if day is not None:
            start = max(start, day) if start else day
            end = min(end, day) if end else day
        return market.daily_quotes(code, start, end)
    if ds.name == "statements":
        code = _code_param(params)
        if code is None and day is None:
            raise BadRequest("This API requires at least 1 parameter as follows; 'date','code'.")
        return market.statements(start=day, end=day, code=code)
    if ds.name == "trades_spec":
        section = params.get("section") or None
        if section is not None and section not in _SECTIONS:
            raise BadRequest(
                f"invalid 'section' parameter {section!r}: expected one of {', '.join(sorted(_SECTIONS))}"
            )
        return market.trades_spec(start, end, section)
    if ds.name == "topix":
        return market.topix(start, end)
    if ds.name in DERIVED_DATASETS:
        return _derived_frame(market, ds, version, params, day, start, end)
    division = params.get(_CALENDAR_DIVISION_PARAM[version]) or None
    if division is not None and division not in ("0", "1", "2", "3"):
        raise BadRequest(
            f"invalid '{_CALENDAR_DIVISION_PARAM[version]}' parameter {division!r}: expected 0-3"
        )
    # without bounds: the market's first day through the year it publishes ahead of its last
    start, end = start or market.start, end or market.end + dt.timedelta(days=CALENDAR_AHEAD_DAYS)
    if (end - start).days > _MAX_CALENDAR_DAYS:
        raise BadRequest("'from'..'to' spans more than 30 years")
    return market.trading_calendar(start, end, division)


def _derived_frame(
    market: Market,
    ds: Dataset,
    version: ApiVersion,
    params: dict[str, str],
    day: dt.date | None,
    start: dt.date | None,
    end: dt.date | None,
) -> pl.DataFrame:
    """indices, short_selling, weekly_margin_interest (``date``/``from``/``to`` on Date),
    earnings_calendar (``date`` on PublishedDate; without it every announcement), dividends
    (``date``/``from``/``to`` on AnnouncementDate), futures and index_option (``date`` only)."""
    if day is not None:
        start = max(start, day) if start else day
        end = min(end, day) if end else day
    if ds.name == "short_selling":
        name = _SECTOR_PARAM[version]
        sector = params.get(name) or None
        if sector is not None and sector not in SECTOR_INDEX_CODES:
            raise BadRequest(f"invalid '{name}' parameter {sector!r}: expected a 33-sector code such as 3650")
        if sector is None and start is None and end is None:
            raise BadRequest(f"This API requires at least 1 parameter as follows; 'date','{name}'.")
        return market.derived(ds.name, start, end, sector=sector)
    if ds.name in ("futures", "index_option"):
        if day is None:
            raise BadRequest("This API requires at least 1 parameter as follows; 'date'.")
        return market.derived(ds.name, day, day)
    if ds.name == "short_selling_positions":
        code = _code_param(params)
        calculated = _date_param(params, _CALCULATED_PARAM[version])
        if code is None and day is None and calculated is None:
            raise BadRequest(
                f"This API requires at least 1 parameter as follows; 'code','{ds.date_param_name(version)}'."
            )
        df = market.derived(ds.name, day, day, code=code)
        return df if calculated is None else df.filter(pl.col("CalculatedDate") == calculated)
    if ds.name == "indices":
        code = params.get("code") or None
        if code is not None and not (len(code) == 4 and code.isascii() and code.isalnum()):
            raise BadRequest(
                f"invalid 'code' parameter {code!r}: expected a 4-character index code such as 0040"
            )
        if code is None and day is None:
            raise BadRequest("This API requires at least 1 parameter as follows; 'date','code'.")
        return market.derived(ds.name, start, end, code=code)
    code = _code_param(params)
    if (
        ds.name in ("weekly_margin_interest", "dividends", "daily_margin_interest")
        and code is None
        and day is None
    ):
        raise BadRequest("This API requires at least 1 parameter as follows; 'date','code'.")
    return market.derived(ds.name, start, end, code=code)


def _json(state: _State, status: int, body: Any, headers: dict[str, str] | None = None) -> web.Response:
    state.stats.response(status)
    return web.Response(
        status=status,
        text=json.dumps(body, ensure_ascii=False),
        content_type="application/json",
        headers=headers,
    )


def _message(state: _State, status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return _json(state, status, {"message": message}, headers)


def _secret_matches(given: str, expected: str) -> bool:
    """Constant-time comparison of a credential from a request with the configured one.

    ``hmac.compare_digest`` refuses ``str`` with non-ASCII characters (TypeError, which would be a
    500 and make clients retry), and a header or JSON body can carry anything, so both sides are
    compared as UTF-8 bytes. ``surrogatepass``: a JSON ``"\\ud800"`` or an undecodable header byte
    arrives as a lone surrogate, which plain UTF-8 encoding refuses."""
    return hmac.compare_digest(
        given.encode("utf-8", "surrogatepass"), expected.encode("utf-8", "surrogatepass")
    )


def _credential(state: _State, request: web.Request, version: ApiVersion) -> str | None:
    now = time.monotonic()
    if version == "v2":
        key = request.headers.get("x-api-key", "")
        return "v2:" + key if key and _secret_matches(key, state.cfg.api_key) else None
    auth = request.headers.get("Authorization", "")
    if not auth.startswith("Bearer "):
        return None
    entry = state.id_tokens.get(auth[len("Bearer ") :].strip())
    if entry is None or entry[1] <= now:
        return None
    return "v1:" + entry[0]


def _data_handler(ds: Dataset, version: ApiVersion):
    path = f"/{version}{ds.path(version)}"

    async def handler(request: web.Request) -> web.StreamResponse:
        state: _State = request.app[STATE]
        cfg = state.cfg
        state.stats.request(path)
        if cfg.latency_s > 0:
            await asyncio.sleep(cfg.latency_s)
        credential = _credential(state, request, version)
        if credential is None:
            if version == "v2":
                has_key = bool(request.headers.get("x-api-key"))
                return _message(state, 401, "Invalid API key" if has_key else "x-api-key header is required")
            return _message(state, 401, INVALID_TOKEN)
        wait = state.limiter.check(credential)
        if wait is not None:
            state.stats.rate_limited()
            return _message(
                state,
                429,
                f"Rate limit exceeded: {cfg.limit_per_minute} requests per minute ({cfg.plan} plan)",
                {"Retry-After": retry_after_header(wait)},
            )
        params = dict(request.query)
        page_key = params.pop("pagination_key", None)
        query = "&".join(f"{k}={v}" for k, v in sorted(params.items()))
        try:
            rows = state.rows(ds, version, params, query)
            offset = state.page_offset(path, query, page_key, len(rows)) if page_key is not None else 0
        except BadRequest as exc:
            return _message(state, 400, str(exc))
        fault = state.draw_fault(version, ("GET", path, query, page_key))
        if fault is not None:
            return await _inject(state, request, version, fault)
        page = rows[offset : offset + cfg.page_size]
        body: dict[str, Any] = {ds.data_key(version): page}
        if offset + cfg.page_size < len(rows):
            body["pagination_key"] = state.page_key(path, query, offset + cfg.page_size)
        state.stats.page(len(page))
        return _json(state, 200, body)

    return handler


async def _inject(state: _State, request: web.Request, version: ApiVersion, fault: tuple[str, float]):
    kind, variant = fault
    state.stats.fault(kind)
    if kind == "429":
        return _message(
            state, 429, "Rate limit exceeded (injected)", {"Retry-After": str(state.cfg.fault_retry_after_s)}
        )
    if kind == "5xx":
        status = (500, 502, 503)[int(variant * 3)]
        return _message(
            state,
            status,
            {500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable"}[status],
        )
    if kind == "drop":
        state.stats.response(0)
        if request.transport is not None:
            request.transport.abort()
        raise asyncio.CancelledError  # nothing more to say on a closed connection
    if kind == "malformed":
        state.stats.response(200)
        if variant < 0.5:
            return web.Response(status=200, text='{"data": [{"Date": "20', content_type="application/json")
        return web.Response(status=200, text='{"unexpected": []}', content_type="application/json")
    # token_expiry (v1 only): revoke the id token, as if it had expired
    auth = request.headers.get("Authorization", "")
    state.id_tokens.pop(auth[len("Bearer ") :].strip(), None)
    return _message(state, 401, INVALID_TOKEN)


async def _auth_user(request: web.Request) -> web.Response:
    state: _State = request.app[STATE]
    state.stats.request("/v1/token/auth_user")
    if state.cfg.latency_s > 0:
        await asyncio.sleep(state.cfg.latency_s)
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return _message(state, 400, "request body must be JSON with 'mailaddress' and 'password'")
    if not isinstance(body, dict) or not body.get("mailaddress") or not body.get("password"):
        return _message(state, 400, "'mailaddress' and 'password' are required.")
    # Both compared (no short cut), so the answer's timing does not tell which one was wrong.
    email_ok = _secret_matches(str(body["mailaddress"]), state.cfg.email)
    password_ok = _secret_matches(str(body["password"]), state.cfg.password)
    ok = email_ok and password_ok
    if not ok:
        return _message(state, 400, "'mailaddress' or 'password' is incorrect.")
    token = secrets.token_urlsafe(32)
    state.refresh_tokens[token] = (state.cfg.email, time.monotonic() + state.cfg.refresh_token_ttl_s)
    return _json(state, 200, {"refreshToken": token})


async def _auth_refresh(request: web.Request) -> web.Response:
    state: _State = request.app[STATE]
    state.stats.request("/v1/token/auth_refresh")
    if state.cfg.latency_s > 0:
        await asyncio.sleep(state.cfg.latency_s)
    token = request.query.get("refreshtoken", "")
    if not token:
        return _message(state, 400, "'refreshtoken' is required.")
    entry = state.refresh_tokens.get(token)
    if entry is None or entry[1] <= time.monotonic():
        return _message(state, 400, "'refreshtoken' is incorrect or expired.")
    id_token = secrets.token_urlsafe(32)
    state.id_tokens[id_token] = (entry[0], time.monotonic() + state.cfg.id_token_ttl_s)
    return _json(state, 200, {"idToken": id_token})


async def _health(request: web.Request) -> web.Response:
    state: _State = request.app[STATE]
    m = state.market
    return web.json_response(
        {"status": "ok", "codes": len(m.codes), "start": m.start.isoformat(), "end": m.end.isoformat()}
    )


async def _stats(request: web.Request) -> web.Response:
    return web.json_response(request.app[STATE].stats.snapshot())


@web.middleware
async def _errors(request: web.Request, handler):
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status >= 400:
            return web.json_response({"message": exc.reason}, status=exc.status)
        raise
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("emulator error on %s", request.path)
        return web.json_response({"message": "Internal Server Error"}, status=500)


def create_app(cfg: EmulatorConfig, market: Market | None = None) -> web.Application:
    """The aiohttp application (generates, or reuses, the market of ``cfg.market``)."""
    market = market or generate_market(cfg.market)
    app = web.Application(middlewares=[_errors])
    app[STATE] = _State(cfg, market)
    for ds in DATASETS.values():
        for version in ("v1", "v2"):
            app.router.add_get(f"/{version}{ds.path(version)}", _data_handler(ds, version))
    app.router.add_post("/v1/token/auth_user", _auth_user)
    app.router.add_post("/v1/token/auth_refresh", _auth_refresh)
    app.router.add_get("/health", _health)
    app.router.add_get("/_stats", _stats)
    return app


def app_state(app: web.Application) -> _State:
    return app[STATE]


class ListenError(OSError):
    """The emulator cannot listen on the host and port it was given (taken, or not this machine's)."""


def _os_reason(exc: OSError) -> str:
    """The short reason of a bind error ("Address already in use"), not asyncio's long rewording."""
    if exc.errno is not None and exc.errno > 0:
        return os.strerror(exc.errno)
    return exc.strerror or str(exc)  # getaddrinfo errors have negative codes and their own text


def serve_forever(
    cfg: EmulatorConfig, host: str = "127.0.0.1", port: int = 8765, port_file: str | Path | None = None
) -> None:
    """Generate the market and serve until SIGINT/SIGTERM.

    ``port=0`` binds a free port; the port actually bound is printed on stdout (``listening on
    http://HOST:PORT``) and, with ``port_file``, written there atomically, both only once the server
    answers, so a caller that waits for either can use the server at once. Raises
    :class:`ListenError` when the socket cannot be bound.
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    t0 = time.perf_counter()
    market = generate_market(cfg.market)
    log.info(
        "market: %d codes, %s..%s, %d trading days (%.1f s)",
        len(market.codes),
        market.start,
        market.end,
        len(market.trading_days),
        time.perf_counter() - t0,
    )
    app = create_app(cfg, market)

    async def serve() -> None:
        # What web.run_app does, but with the bound port in hand before serving: run_app only logs
        # the port it was given (0 stays 0).
        runner = web.AppRunner(app, access_log=None, handle_signals=True)
        await runner.setup()
        try:
            try:
                await web.TCPSite(runner, host, port).start()
            except OSError as exc:
                raise ListenError(f"cannot listen on {host}:{port}: {_os_reason(exc)}") from exc
            bound = runner.addresses[0][1]
            if port_file is not None:
                write_port_file(port_file, bound)
            log.info(
                "J-Quants emulator (v1: /v1, v2: /v2), plan %s (%d req/min), page size %d",
                cfg.plan,
                cfg.limit_per_minute,
                cfg.page_size,
            )
            print(f"J-Quants emulator listening on http://{host}:{bound}", flush=True)
            await asyncio.Event().wait()  # until a signal ends the loop (GracefulExit)
        finally:
            await runner.cleanup()

    try:
        asyncio.run(serve())
    except (web.GracefulExit, KeyboardInterrupt):
        pass
