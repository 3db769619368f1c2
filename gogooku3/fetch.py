"""Fetch one JST logical date of J-Quants data into the lake's raw layer.

What "the data of day D" means per dataset (D is a JST date on the JPX calendar):

=============  =====================================  ===========================================
dataset        query                                   partition ``raw/<name>/date=D``
=============  =====================================  ===========================================
listed_info    ``date=D``                              issues listed as of D
daily_quotes   ``date=D`` (whole market, all pages)    bars of trading day D
statements     ``date=D``                              statements *disclosed* on D
trades_spec    ``from=D&to=D``                         weekly records *published* on D
topix          ``from=D&to=D``                         TOPIX bar of D
indices        ``date=D`` (all pages)                  the sector indices' bars of D
short_selling  ``date=D``                              the 33 sectors' selling turnover of D
weekly_margin  ``date=D``                              balances recorded on D (a week's last
_interest                                              trading day; published 2 trading days later)
earnings_      ``date=D``                              earnings dates *announced* on D
calendar
dividends      ``date=D``                              dividend notices *announced* on D
futures,       ``date=D``                              the contracts' bars of trading date D (its
index_option                                           night session ran the evening before)
daily_margin_  ``date=D``                              margin alerts *published* on D (balances of
interest                                               an earlier ApplicationDate)
short_selling_ ``disclosed_date=D``                    short position reports *disclosed* on D
positions
trading_       (none: the whole calendar)              a snapshot: every day the API answers, as
calendar                                               fetched on D; checked against the rule and
                                                       followed (:mod:`gogooku3.exchange_calendar`)
=============  =====================================  ===========================================

Rows whose partition column (``Date``/``DisclosedDate``/``PublishedDate``) is not D are never written
into D's partition: for the range queries they are dropped, for the ``date=`` queries they mean the
server answered something else and the fetch fails.

Empty answers: on a non-trading day nothing is written and the result says why (``skipped``). On a
trading day an empty ``daily_quotes``/``topix``/``listed_info`` answer is an error - the data is not
published yet or the source is broken - so the task fails and Airflow retries instead of recording
a hole (``indices``, ``short_selling``, ``futures`` and ``index_option`` too). ``statements``, ``trades_spec``,
``weekly_margin_interest``, ``earnings_calendar``, ``dividends``, ``daily_margin_interest`` and
``short_selling_positions`` legitimately have quiet days: an empty partition is
written so "fetched, nothing disclosed" is distinguishable from "not fetched".

Backfills spend the plan's request quota, so ``skip_complete=True`` (the CLI's default; ``--force``
turns it off) requests nothing for a dataset whose partition of D is already *complete*: committed,
its bytes matching the manifest's SHA-256, and written after the dataset's last publication for D
(:data:`FINAL_AFTER_JST`: a statements partition written by the 19:00 run of D still lacks the 24:30
batch, so it is fetched again). Airflow tasks always fetch: a task run is a request for the data,
and Airflow decides which runs a backfill repeats.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl

from gogooku3 import exchange_calendar
from gogooku3.calendar import JST, is_trading_day, set_exchange_overrides
from gogooku3.config import Settings
from gogooku3.jquants.client import JQuantsClient, Query
from gogooku3.jquants.datasets import ENDPOINT_NAMES, SNAPSHOT_DATASETS, get_dataset
from gogooku3.jquants.errors import JQuantsError
from gogooku3.pit import published_on

#: Datasets that have rows on every trading day; an empty answer then is a failure.
DAILY_DATASETS = frozenset(
    {"listed_info", "daily_quotes", "topix", "indices", "short_selling", "trading_calendar"}
)

#: When day D's data of each dataset is final, as (days after its publication day, JST time): bars,
#: TOPIX and listed info are out after the close (19:00 leaves slack), investor types, indices,
#: sector short selling and weekly margin after ~16:30 (17:00-18:00), the earnings calendar at
#: ~19:00 (20:00), and statements in two batches, the second at 24:30, i.e. 00:30 on D+1 (01:00
#: leaves slack); dividend notices come with the disclosures, so they are final when statements
#: are; derivatives after the day session's settlement, margin alerts and short position reports
#: in the evening (19:00 leaves slack). The publication day is D itself except where :data:`gogooku3.pit.PUBLICATION_DAYS`
#: says otherwise.
FINAL_AFTER_JST: dict[str, tuple[int, dt.time]] = {
    "listed_info": (0, dt.time(19, 0)),
    "daily_quotes": (0, dt.time(19, 0)),
    "topix": (0, dt.time(19, 0)),
    "trades_spec": (0, dt.time(18, 0)),
    "statements": (1, dt.time(1, 0)),
    "indices": (0, dt.time(17, 0)),
    "short_selling": (0, dt.time(17, 0)),
    "weekly_margin_interest": (0, dt.time(17, 0)),
    "earnings_calendar": (0, dt.time(20, 0)),
    "dividends": (1, dt.time(1, 0)),
    "daily_margin_interest": (0, dt.time(19, 0)),
    "short_selling_positions": (0, dt.time(19, 0)),
    "futures": (0, dt.time(19, 0)),
    "index_option": (0, dt.time(19, 0)),
    "trading_calendar": (0, dt.time(0, 0)),  # a snapshot: complete once written
}


class EmptyAnswerError(JQuantsError):
    """A dataset that must have rows on a trading day came back empty."""


class PartitionMismatchError(JQuantsError):
    """The server answered rows of another date than the one asked for."""


@dataclass(frozen=True)
class FetchResult:
    """What happened to one dataset for one day."""

    dataset: str
    day: dt.date
    rows: int
    pages: int
    requests: int
    written: bool
    uri: str | None = None
    reason: str = ""

    def summary(self) -> str:
        head = f"{self.dataset} {self.day.isoformat()}:"
        cost = f"{self.pages} page{'s' if self.pages != 1 else ''}, {self.requests} request{'s' if self.requests != 1 else ''}"
        if self.written:
            return f"{head} wrote {self.rows} rows ({cost}) -> {self.uri}"
        return f"{head} skipped, {self.reason} ({cost})"


def final_after(name: str, day: dt.date) -> dt.datetime:
    """The moment (aware, JST) after which dataset ``name``'s data of ``day`` no longer changes."""
    days_after, at = FINAL_AFTER_JST[get_dataset(name).name]
    published = published_on(get_dataset(name).name, day)
    return dt.datetime.combine(published + dt.timedelta(days=days_after), at, tzinfo=JST)


def complete_partition(lake: Any, name: str, day: dt.date) -> Any | None:
    """The manifest of ``raw/<name>/date=day`` when the partition is complete (committed, its bytes
    verified against the manifest, written after :func:`final_after`), else None. A corrupt
    partition is not complete: fetching it again heals it."""
    from gogooku3.lake import CorruptPartitionError

    if not lake.has_partition("raw", name, day):
        return None
    try:
        manifest = lake.verify_partition("raw", name, day)
    except CorruptPartitionError:
        return None
    written = dt.datetime.fromisoformat(manifest.written_at)
    return manifest if written >= final_after(name, day) else None


def query_for(name: str, day: dt.date) -> Query:
    """The query that returns dataset ``name``'s rows for JST date ``day``."""
    get_dataset(name)  # names the valid datasets on a typo
    if name in SNAPSHOT_DATASETS:
        return Query(name)
    if name in ("trades_spec", "topix"):
        return Query(name, from_=day, to=day)
    return Query(name, date=day)


def select_day(name: str, day: dt.date, frame: pl.DataFrame) -> pl.DataFrame:
    """Rows of ``frame`` that belong to ``day``'s partition (see the module docstring)."""
    column = get_dataset(name).partition_by
    if frame.is_empty() or name in SNAPSHOT_DATASETS:
        return frame
    on_day = frame.filter(pl.col(column).eq_missing(day))
    if on_day.height != frame.height and name not in ("trades_spec", "topix"):
        others = frame.filter(pl.col(column).ne_missing(day)).get_column(column).unique().sort().to_list()[:3]
        shown = ", ".join("null" if v is None else v.isoformat() for v in others)
        raise PartitionMismatchError(
            f"{name}: asked for date={day.isoformat()} but the answer has {column} {shown}"
        )
    return on_day


def check_unique(name: str, day: dt.date, frame: pl.DataFrame) -> None:
    """The dataset key must be unique within a partition: a duplicate means a paging/merge bug."""
    key = list(get_dataset(name).key)
    dupes = frame.filter(frame.select(key).is_duplicated())
    if dupes.height:
        sample = dupes.select(key).unique(maintain_order=True).head(3).rows()
        raise PartitionMismatchError(
            f"{name} {day.isoformat()}: {dupes.height} rows share a key {key}, e.g. {sample}"
        )


async def fetch_to_lake(
    settings: Settings,
    dataset_names: Sequence[str],
    day: dt.date,
    lake: Any,
    *,
    client: JQuantsClient | None = None,
    skip_complete: bool = False,
) -> list[FetchResult]:
    """Fetch ``day`` of each dataset concurrently and write its raw partition; results in input order.

    ``client`` may be an open client to reuse (backfills); otherwise one is opened and closed here.
    With ``skip_complete`` a dataset whose partition is already complete (:func:`complete_partition`)
    is not requested; its result says so. Nothing is written until every requested dataset was
    fetched and validated, so a failed fetch writes nothing.
    """
    names = list(dict.fromkeys(dataset_names))
    unknown = [n for n in names if n not in ENDPOINT_NAMES]
    if unknown:
        raise ValueError(f"unknown endpoint {unknown[0]!r}: expected one of {', '.join(ENDPOINT_NAMES)}")
    done: dict[str, FetchResult] = {}
    if skip_complete:
        for name in names:
            manifest = await asyncio.to_thread(complete_partition, lake, name, day)
            if manifest is not None:
                reason = (
                    f"already complete in the lake ({manifest.rows} rows, sha256 {manifest.checksum[:12]} "
                    f"verified, written {manifest.written_at}); --force refetches"
                )
                done[name] = FetchResult(name, day, manifest.rows, 0, 0, written=False, reason=reason)
    results = await _fetch_and_write(settings, [n for n in names if n not in done], day, lake, client)
    fetched = {r.dataset: r for r in results}
    return [done.get(n) or fetched[n] for n in names]


async def _fetch_and_write(
    settings: Settings, names: list[str], day: dt.date, lake: Any, client: JQuantsClient | None
) -> list[FetchResult]:
    if not names:
        return []
    queries = [query_for(n, day) for n in names]
    if client is None:
        async with JQuantsClient(settings.jquants) as own:
            outcomes = await own.fetch_queries(queries)
    else:
        outcomes = await client.fetch_queries(queries)

    version = settings.jquants.api_version
    frames = {n: select_day(n, day, o.frame) for n, o in zip(names, outcomes, strict=True)}
    if "trading_calendar" in frames and frames["trading_calendar"].height:
        # The exchange decides what a trading day is, from this answer on (this day included).
        calendar = frames["trading_calendar"]
        exchange_calendar.check(calendar, f"J-Quants' trading calendar fetched on {day.isoformat()}")
        set_exchange_overrides(exchange_calendar.official_days(calendar))
    trading = is_trading_day(day)
    for name in names:  # validate everything before writing anything
        check_unique(name, day, frames[name])
        if frames[name].is_empty() and trading and name in DAILY_DATASETS:
            raise EmptyAnswerError(
                f"{name}: no rows for trading day {day.isoformat()} (not published yet, or the source is broken)"
            )

    results: list[FetchResult] = []
    for name, outcome in zip(names, outcomes, strict=True):
        frame = frames[name]
        base = {"dataset": name, "day": day, "pages": outcome.pages, "requests": outcome.requests}
        if frame.is_empty() and not trading:
            reason = f"no rows: {day.isoformat()} ({day:%A}) is not a JPX trading day"
            results.append(FetchResult(rows=0, written=False, reason=reason, **base))
            continue
        dataset = get_dataset(name)
        await asyncio.to_thread(
            lake.write_partition,
            "raw",
            name,
            day,
            frame,
            source=f"jquants-{version}",
            sort_by=dataset.key,
            date_column=None if name in SNAPSHOT_DATASETS else dataset.partition_by,
        )
        results.append(
            FetchResult(rows=frame.height, written=True, uri=lake.uri_for("raw", name, day), **base)
        )
    return results


def fetch_to_lake_sync(
    settings: Settings,
    dataset_names: Sequence[str],
    day: dt.date,
    *,
    lake_uri: str | None = None,
    skip_complete: bool = False,
) -> list[FetchResult]:
    """Blocking wrapper for the CLI and Airflow tasks: opens the lake, follows the exchange calendar
    it holds (:func:`gogooku3.exchange_calendar.follow_exchange`) and runs :func:`fetch_to_lake`."""
    lake = exchange_calendar.open_lake_following_exchange(lake_uri or settings.lake_uri, settings.s3)
    return asyncio.run(fetch_to_lake(settings, dataset_names, day, lake, skip_complete=skip_complete))
