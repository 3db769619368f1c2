"""Benchmark: a one-year whole-market backfill of daily bars, ours vs the official client.

Setup: the emulator (``gogooku3 emulator`` in its own process on 127.0.0.1, as the real API is
remote: sharing this process's GIL would add the server's pauses to the client's) serving 4,000
codes for one year, Premium plan limit (500 requests/minute) enforced with 429s, 200 ms injected
latency per request, default page size (1,000 rows). Both clients do the same work - every daily
bar of the year, fetched by date for the whole market - one after the other, each against a
freshly started emulator (empty rate-limit window, zeroed counters).

* **gogooku3** :class:`~gogooku3.jquants.client.JQuantsClient`: one query per JPX trading day
  (``date=D``, all pages), concurrency 8, paced at the plan's rate by the shared pacer (fresh
  state directory, so nothing else shares its schedule).
* **official** ``jquantsapi.ClientV2.get_eq_bars_daily_range`` (5 worker threads, one query per
  *calendar* day, urllib3 ``Retry(total=3)`` on 429/5xx honouring Retry-After). Its
  ``JQUANTS_API_BASE`` is pointed at the emulator; its retry adapter is mounted for ``https://``
  only, so for fairness the same adapter is also mounted for ``http://`` (without that it would
  not retry a single 429 against the http:// emulator).

Reported per client: HTTP requests the emulator received, the minimum needed
(sum over days of ceil(rows / page size), one request for a day without rows - the official
client also asks for weekends and holidays, which it counts as days), 429s received, achieved
request rate as a fraction of the plan's limit, wall time, rows fetched and whether they equal
the generator's ground truth. ``quick`` backfills January of 2,000 codes instead (a smoke test: too short to meet the limit).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import math
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from gogooku3.calendar import trading_days
from gogooku3.config import PLAN_RATE_PER_MINUTE, JQuantsSettings, Secret
from gogooku3.devtools.ports import wait_for_port_file
from gogooku3.emulator.config import DEFAULT_API_KEY
from gogooku3.jquants.client import JQuantsClient, Query
from gogooku3.market import Market, MarketConfig, generate_market

PLAN = "premium"
LATENCY_S = 0.2
PAGE_SIZE = 1000  # the emulator's (and J-Quants') default page size
SEED = 7
FULL = {"codes": 4000, "start": dt.date(2023, 1, 1), "end": dt.date(2023, 12, 31)}
QUICK = {"codes": 2000, "start": dt.date(2023, 1, 1), "end": dt.date(2023, 1, 31)}


class Emulator:
    """A ``gogooku3 emulator`` subprocess: its v2 URL and its ``/_stats`` counters."""

    def __init__(self, port: int) -> None:
        self.base_url = f"http://127.0.0.1:{port}"
        self.base_url_v2 = f"{self.base_url}/v2"
        self.api_key = DEFAULT_API_KEY

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.base_url}/_stats", timeout=10) as resp:
            return json.loads(resp.read())


@contextmanager
def emulator_process(spec: dict[str, Any]) -> Iterator[Emulator]:
    # Port 0: the emulator binds a free port itself and writes it to the port file once it answers
    # (a port picked here and passed on could be taken by something else before it binds).
    with tempfile.TemporaryDirectory(prefix="gogooku3-bench-emulator-") as tmp:
        port_file = f"{tmp}/port"
        args = ["emulator", "--port", "0", "--port-file", port_file, "--seed", str(SEED)]
        args += ["--codes", str(spec["codes"]), "--start", spec["start"].isoformat()]
        args += ["--end", spec["end"].isoformat(), "--plan", PLAN]
        args += ["--page-size", str(PAGE_SIZE), "--latency-ms", str(LATENCY_S * 1000)]
        proc = subprocess.Popen(
            [sys.executable, "-c", "from gogooku3.cli import app; app()", *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            yield Emulator(wait_for_port_file(port_file, proc, timeout_s=120))
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


def _minimum_requests(market: Market, days: list[dt.date]) -> tuple[int, int]:
    """(minimum requests, ground-truth rows) to fetch ``days`` by date."""
    need, rows = 0, 0
    for d in days:
        n = market.frame("daily_quotes", d).height
        rows += n
        need += max(1, math.ceil(n / PAGE_SIZE))
    return need, rows


def _served(emu: Emulator) -> tuple[int, int]:
    s = emu.stats()
    return int(s["requests_total"]), int(s["responses"].get("429", 0))


def _row(client: str, emu: Emulator, wall_s: float, rows: int | None, truth_rows: int, **extra: Any) -> dict:
    requests, throttled = _served(emu)
    limit = PLAN_RATE_PER_MINUTE[PLAN]
    return {
        "client": client,
        "requests": requests,
        "min requests": extra.pop("minimum"),
        "429s": throttled,
        "rate / plan": requests / wall_s * 60.0 / limit if wall_s > 0 else 0.0,
        "wall s": wall_s,
        "rows": rows,
        "rows == truth": rows == truth_rows if rows is not None else False,
        **extra,
    }


async def _ours(handle: Emulator, days: list[dt.date], pacer_dir: str) -> tuple[int, dict]:
    settings = JQuantsSettings(
        api_version="v2",
        base_url=handle.base_url_v2,
        api_key=Secret(handle.api_key),
        plan=PLAN,
        rate_per_minute=float(PLAN_RATE_PER_MINUTE[PLAN]),
        concurrency=8,
        pacer_dir=pacer_dir,
    )
    async with JQuantsClient(settings) as client:
        frames = await client.fetch_many([Query("daily_quotes", date=d) for d in days])
        stats = client.stats
    return sum(f.height for f in frames), {"retries": stats.retries, "pacer forfeits": client.pacer.forfeited}


def _official(handle: Emulator, start: dt.date, end: dt.date) -> int:
    import jquantsapi

    cli = jquantsapi.ClientV2(api_key=handle.api_key)
    cli.JQUANTS_API_BASE = handle.base_url_v2  # instance attribute shadows the class constant
    session = cli._request_session()
    # Fairness: ClientV2 mounts its Retry adapter for https:// only; give http:// the same one.
    session.mount("http://", session.get_adapter("https://api.jquants.com"))
    df = cli.get_eq_bars_daily_range(start_dt=start.isoformat(), end_dt=end.isoformat())
    return len(df)


def run(quick: bool) -> list[dict]:
    spec = QUICK if quick else FULL
    market = generate_market(
        MarketConfig(seed=SEED, n_codes=spec["codes"], start=spec["start"], end=spec["end"])
    )
    days = list(trading_days(spec["start"], spec["end"]))
    minimum, truth_rows = _minimum_requests(market, days)
    non_trading = (spec["end"] - spec["start"]).days + 1 - len(days)
    setup = f"{spec['codes']} codes, {spec['start']}..{spec['end']}, {len(days)} trading days"
    out: list[dict] = []

    with emulator_process(spec) as emu, tempfile.TemporaryDirectory(prefix="gogooku3-bench-pacer-") as pacer:
        t0 = time.perf_counter()
        rows, extra = asyncio.run(_ours(emu, days, pacer))
        wall = time.perf_counter() - t0
        out.append(_row("gogooku3 JQuantsClient", emu, wall, rows, truth_rows, minimum=minimum, **extra))

    with emulator_process(spec) as emu:
        t0 = time.perf_counter()
        try:
            rows_off: int | None = _official(emu, spec["start"], spec["end"])
            note = "ok"
        except Exception as exc:  # report the official client's failure, do not hide it
            rows_off = None
            note = f"FAILED: {type(exc).__name__}: {str(exc)[:160]}"
        wall = time.perf_counter() - t0
        out.append(
            _row(
                "jquantsapi.ClientV2 (http adapter mounted)",
                emu,
                wall,
                rows_off,
                truth_rows,
                minimum=minimum + non_trading,
                retries="urllib3",
                note=note,
            )
        )
    for r in out:
        r["setup"] = setup
        r.setdefault("note", "ok")
    return out
