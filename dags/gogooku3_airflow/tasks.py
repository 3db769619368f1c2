"""The bodies of the DAGs' TaskFlow tasks: each takes the context values it uses by name (the DAG
file's ``@task`` passes them on) and calls the library. Heavy imports (polars, aiohttp, boto3, Great
Expectations) happen inside the bodies, at task run time, so DAG files parse fast.

Only tasks that call J-Quants need its credentials (``task_settings(jquants=True)``); a task that
only touches the lake runs without them.

jquants_daily
    :func:`fetch_dataset` (one per dataset), :func:`gate_raw`, :func:`publish_raw`
trades_spec_weekly
    :func:`fetch_trades_spec`, :func:`expand_trades_spec`, :func:`gate_trades_spec`,
    :func:`publish_trades_spec` (what each run writes: :func:`expand_range`)
features_daily
    :func:`plan_feature_build`, :func:`choose_build`, :func:`build_features_in_process`,
    :func:`gate_features`, :func:`publish_features` (the container itself is
    :class:`~gogooku3_airflow.operators.FeatureBuildOperator`)
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from gogooku3.calendar import (
    is_publication_day,
    is_trading_day,
    next_trading_day,
    previous_trading_day,
    trading_days,
)
from gogooku3.pit import partition_published_on
from gogooku3_airflow.assets import FEATURES, INTERIM_TRADES_SPEC_DAILY, RAW_ASSETS
from gogooku3_airflow.runconf import (
    FEATURES_DAILY_CONF,
    JQUANTS_DAILY_CONF,
    TRADES_SPEC_WEEKLY_CONF,
    date_range,
    parse_conf,
)
from gogooku3_airflow.timetables import run_day

log = logging.getLogger("gogooku3.dags")


def _fail(message: str) -> Exception:
    from airflow.sdk.exceptions import AirflowFailException

    return AirflowFailException(message)


def _skip(message: str) -> Exception:
    from airflow.sdk.exceptions import AirflowSkipException

    return AirflowSkipException(message)


def _day(logical_date: dt.datetime | None, dag_run: Any) -> dt.date:
    try:
        return run_day(logical_date, None, dag_run)
    except ValueError as exc:
        raise _fail(str(exc)) from None


def _lake(settings: Any) -> Any:
    """The task's lake, with the exchange's calendar it holds followed by this process (a special
    closure is then no trading day for the task: :mod:`gogooku3.exchange_calendar`)."""
    from gogooku3.exchange_calendar import open_lake_following_exchange

    return open_lake_following_exchange(settings.lake_uri, settings.s3)


# ============================================================================== jquants_daily


#: Datasets disclosed until 24:30 JST, after the 19:00 run: each run fetches again since the
#: previous trading day (:func:`fetch_days`).
LATE_BATCH_DATASETS = frozenset({"statements", "dividends"})


def fetch_days(dataset: str, day: dt.date) -> list[dt.date]:
    """The days a run for trading day ``day`` fetches for ``dataset``.

    Statements arrive in two batches (18:00 and 24:30 JST); the run at 19:00 sees only the first.
    So the statements task also re-fetches every calendar day since the previous trading day,
    which completes that day's partition with its 24:30 batch and catches disclosures dated on a
    weekend or holiday in between; dividend notices come with the same disclosures, so their task
    does the same (:data:`LATE_BATCH_DATASETS`). Rewrites are idempotent. Weekly margin balances:
    the record date published on ``day`` (2 trading days after it, :mod:`gogooku3.pit`), none on
    other days. Other datasets: just ``day``.
    """
    if dataset not in LATE_BATCH_DATASETS:
        partition = run_partition(dataset, day)
        return [partition] if partition is not None else []
    start = previous_trading_day(day)
    return [start + dt.timedelta(days=i) for i in range((day - start).days + 1)]


def run_partition(dataset: str, day: dt.date) -> dt.date | None:
    """The partition of ``dataset`` that the run for trading day ``day`` writes and publishes: ``day``,
    except weekly margin balances, partitioned by their record date (None when no record is
    published on ``day``): :func:`gogooku3.pit.partition_published_on`."""
    return partition_published_on(dataset, day)


def requested_datasets(dag_run: Any) -> tuple[str, ...]:
    """The datasets the run fetches: ``dag_run.conf["endpoints"]``, else all of jquants_daily's."""
    from gogooku3_airflow import JQUANTS_DAILY_DATASETS

    return parse_conf(JQUANTS_DAILY_CONF, dag_run).get("endpoints", JQUANTS_DAILY_DATASETS)


def fetch_dataset(dataset: str, *, logical_date: dt.datetime | None, dag_run: Any) -> dict[str, Any]:
    """Fetch ``dataset`` for the run's JST day into the lake; a JSON-able summary (XCom). Skips, with
    the reason, a dataset left out by ``dag_run.conf['endpoints']`` and a day that is not a trading day."""
    from gogooku3.fetch import fetch_to_lake_sync
    from gogooku3.jquants.errors import AuthError
    from gogooku3_airflow.hooks import task_settings

    endpoints = requested_datasets(dag_run)
    if dataset not in endpoints:
        raise _skip(f"{dataset}: not in dag_run.conf['endpoints'] {list(endpoints)}")
    day = _day(logical_date, dag_run)
    _lake(task_settings())  # follow the exchange's calendar: is the day a trading day?
    if not is_trading_day(day):
        raise _skip(f"{day.isoformat()} ({day:%A}) is not a JPX trading day: nothing to fetch")
    days = fetch_days(dataset, day)
    if not days:
        raise _skip(f"{dataset}: nothing is published on {day.isoformat()} ({day:%A})")
    settings = task_settings(jquants=True)
    partitions = []
    for d in days:
        try:
            results = fetch_to_lake_sync(settings, [dataset], d, lake_uri=settings.lake_uri)
        except AuthError as exc:
            raise _fail(f"AuthError: {exc}") from None  # retrying a refused credential cannot help
        for r in results:
            log.info("%s", r.summary())
            partitions.append({"date": r.day.isoformat(), "rows": r.rows, "written": r.written, "uri": r.uri})
    return {
        "dataset": dataset,
        "date": day.isoformat(),
        "lake_uri": settings.lake_uri,
        "partitions": partitions,
    }


def gate_raw(dataset: str, *, logical_date: dt.datetime | None, dag_run: Any) -> list[str]:
    """The raw ``dataset`` suite on the partition the run wrote (:func:`run_partition`) and on the
    earlier partitions it fetched again and found (:func:`fetch_days`: a late batch changes them);
    daily_quotes' rows checked against that day's listed universe. Skips when the run did not fetch
    ``dataset``, the day is not a trading day, or nothing of ``dataset`` is published on it."""
    from gogooku3.quality import expected_rows_from_listed_info
    from gogooku3_airflow.gates import gate_days
    from gogooku3_airflow.hooks import task_settings

    if dataset not in requested_datasets(dag_run):
        raise _skip(f"dag_run.conf did not ask for {dataset}: nothing to gate")
    day = _day(logical_date, dag_run)
    lake = _lake(task_settings())
    if not is_trading_day(day):
        raise _skip(f"{day.isoformat()} is not a JPX trading day: nothing to gate")
    partition = run_partition(dataset, day)
    if partition is None:
        raise _skip(f"no {dataset} partition is published on {day.isoformat()}: nothing to gate")
    expected = (lambda d: expected_rows_from_listed_info(lake, d)) if dataset == "daily_quotes" else None
    days = [d for d in fetch_days(dataset, day) if d == partition or lake.has_partition("raw", dataset, d)]
    return gate_days(lake, "raw", dataset, days, expected_rows=expected)


def publish_raw(
    alias: Any, *, logical_date: dt.datetime | None, dag_run: Any, outlet_events: Any
) -> dict[str, dict[str, Any]]:
    """One asset event per raw table the run wrote for its day, through the asset ``alias``.

    Each event's ``extra`` has the partition's JST ``date`` (:func:`run_partition`), ``rows``, ``checksum`` (of the Parquet file, from the
    partition's manifest, read back from the lake) and the physical ``lake_uri``. Datasets the run
    skipped (``dag_run.conf['endpoints']``) get no event, so downstream DAGs are not triggered by
    data that did not change.
    """
    from gogooku3_airflow.hooks import task_settings

    endpoints = requested_datasets(dag_run)
    day = _day(logical_date, dag_run)
    settings = task_settings()
    lake = _lake(settings)
    if not is_trading_day(day):
        raise _skip(f"{day.isoformat()} is not a JPX trading day: nothing to publish")
    published: dict[str, dict[str, Any]] = {}
    for name in endpoints:
        partition = run_partition(name, day)
        if partition is None:
            continue  # nothing of it is published on this day (the fetch task skipped)
        manifest = lake.read_manifest("raw", name, partition)
        extra = {
            "date": partition.isoformat(),
            "rows": manifest.rows,
            "checksum": manifest.checksum,
            "schema_hash": manifest.schema_hash,
            "lake_uri": settings.lake_uri,
            "partition": lake.uri_for("raw", name, partition),
        }
        outlet_events[alias].add(RAW_ASSETS[name], extra=extra)
        published[name] = extra
        log.info("published %s %s: %d rows", RAW_ASSETS[name].uri, partition.isoformat(), manifest.rows)
    return published


# ============================================================================== trades_spec_weekly
#
# What each run writes (publication day P, previous scheduled publication P0, next P1):
#
# * raw/trades_spec/date=d for every calendar day d of the window [W, P]
#   (gogooku3.flows.fetching.fetch_window), empty on a day with nothing published.
# * interim/trades_spec_daily/date=D for every trading day D in [usable_date(W), P1] (expand_range):
#   final through last_determined_day(P) (normally the trading day after P): day D uses exactly
#   the records published before D, and every such day is now in the lake; provisional after that,
#   through P1: those rows assume nothing is published between P and D, which holds on the regular
#   schedule. The features DAG needs a row for every trading day until the next run, so they are
#   written now; the next run's window starts right after P, so it rewrites them.
#
# Idempotent: the raw partitions are the source's answer for fixed dates, and each interim partition
# is a pure function of the raw partitions published before its date; both are replaced atomically.


def expand_range(day: dt.date, fetched_start: dt.date) -> tuple[dt.date, dt.date, dt.date]:
    """``(start, final_through, end)`` of the interim rebuild after fetching ``[fetched_start, day]``.

    ``start = usable_date(fetched_start)``: no earlier row can use a record of the window.
    ``final_through = last_determined_day(day)``; ``end = provisional_through(day)``: the trading day
    before the next publication becomes usable.
    """
    from gogooku3.flows import last_determined_day, provisional_through

    return next_trading_day(fetched_start), last_determined_day(day), provisional_through(day)


def fetch_trades_spec(*, logical_date: dt.datetime | None, dag_run: Any) -> dict[str, Any]:
    """Fetch the run's window into ``raw/trades_spec``; the window summary and the interim range to
    rebuild (XCom). A re-expansion (``dag_run.conf`` ``start``/``end``) fetches nothing."""
    reexpand = date_range(parse_conf(TRADES_SPEC_WEEKLY_CONF, dag_run))
    day = _day(logical_date, dag_run)
    if reexpand is not None:
        start, end = reexpand
        log.info("re-expansion %s..%s requested in dag_run.conf: nothing fetched", start, end)
        return {
            "day": day.isoformat(),
            "fetched": None,
            "expand": [start.isoformat(), end.isoformat()],
            "final_through": None,  # known only from the lake: see expand_trades_spec
        }
    from gogooku3.flows.fetching import fetch_window, fetch_window_to_lake_sync
    from gogooku3.jquants.errors import AuthError
    from gogooku3_airflow.hooks import task_settings

    if not is_publication_day(day):
        log.warning("%s is not a scheduled trades_spec publication day; fetching its window anyway", day)
    start, end = fetch_window(day)
    settings = task_settings(jquants=True)
    try:
        fetched = fetch_window_to_lake_sync(settings, start, end, lake_uri=settings.lake_uri)
    except AuthError as exc:
        raise _fail(f"AuthError: {exc}") from None
    first, final, last = expand_range(day, fetched.start)
    log.info(
        "trades_spec %s..%s: %d records in %d request(s); interim to rebuild %s..%s (final through %s)",
        start,
        end,
        fetched.rows,
        fetched.requests,
        first,
        last,
        final,
    )
    return {
        "day": day.isoformat(),
        "fetched": fetched.to_json(),
        "expand": [first.isoformat(), last.isoformat()],
        "final_through": final.isoformat(),
    }


def expand_trades_spec(fetched: Mapping[str, Any]) -> dict[str, Any]:
    """Rebuild ``interim/trades_spec_daily`` for ``fetched['expand']``; the written days and rows."""
    from gogooku3.flows import expand_to_lake, last_determined_day
    from gogooku3_airflow.hooks import task_settings

    start, end = (dt.date.fromisoformat(d) for d in fetched["expand"])
    lake = _lake(task_settings())
    try:
        manifests = expand_to_lake(lake, start, end)
    except ValueError as exc:  # an unfetched or orphaned raw layer, a range beyond it: retrying cannot help
        raise _fail(f"{type(exc).__name__}: {exc}") from None
    days = {m.date.isoformat(): m.rows for m in manifests}
    final_through = fetched.get("final_through")
    if final_through is None:  # a re-expansion: final through what the raw layer determines
        raw_days = lake.list_partitions("raw", "trades_spec")
        final_through = min(end, last_determined_day(raw_days[-1])).isoformat()
    log.info(
        "interim/trades_spec_daily: %d partitions %s..%s, %d rows", len(days), start, end, sum(days.values())
    )
    return {
        "start": start.isoformat(),
        "end": end.isoformat(),
        "final_through": final_through,
        "days": days,
        "rows": sum(days.values()),
    }


def first_published(lake: Any) -> dt.date | None:
    """The earliest ``raw/trades_spec`` partition holding records (None without any); reads
    manifests in date order and stops at the first non-empty one."""
    for day in lake.list_partitions("raw", "trades_spec"):
        if lake.read_manifest("raw", "trades_spec", day).rows:
            return day
    return None


def gate_trades_spec(expanded: Mapping[str, Any]) -> dict[str, Any]:
    """The ``trades_spec_daily`` quality gate on every written partition; any failure fails the task
    at once (no retry: the data would not change) with the failing expectations, which the failure
    callback sends to Slack, and nothing downstream runs.

    An empty partition on a day before any record was published (the first days of a fresh lake: no
    week usable yet) is correct and is not gated (the suite has nothing to check on zero rows); an
    empty partition on a later day is gated, and fails.
    """
    from gogooku3_airflow.gates import gate_days
    from gogooku3_airflow.hooks import task_settings

    lake = _lake(task_settings())
    first = first_published(lake) if any(rows == 0 for rows in expanded["days"].values()) else None
    not_gated = sorted(
        d
        for d, rows in expanded["days"].items()
        if rows == 0 and (first is None or dt.date.fromisoformat(d) <= first)
    )
    for day in not_gated:
        log.info("%s: no trades_spec week published before it in the lake; empty partition not gated", day)
    gated = [dt.date.fromisoformat(d) for d in expanded["days"] if d not in not_gated]
    passed = gate_days(lake, "interim", "trades_spec_daily", gated, build_docs=False)
    return {"passed": sorted(passed), "not_gated": not_gated}


def publish_trades_spec(
    expanded: Mapping[str, Any], *, logical_date: dt.datetime | None, dag_run: Any, outlet_events: Any
) -> dict[str, Any]:
    """Attach the rebuilt range (start, end, final_through, rows, days) to the interim asset event."""
    from gogooku3_airflow.hooks import task_settings

    extra = {
        "start": expanded["start"],
        "end": expanded["end"],
        "final_through": expanded["final_through"],
        "rows": expanded["rows"],
        "days": len(expanded["days"]),
        "lake_uri": task_settings().lake_uri,
        "publication_day": _day(logical_date, dag_run).isoformat(),
    }
    outlet_events[INTERIM_TRADES_SPEC_DAILY].extra.update(extra)
    log.info(
        "published %s %s..%s: %d rows",
        INTERIM_TRADES_SPEC_DAILY.uri,
        extra["start"],
        extra["end"],
        extra["rows"],
    )
    return extra


# ============================================================================== features_daily
#
# Which dates a run builds: dag_run.conf {"start", "end", "engine"} when given; otherwise the dates of
# the asset events that triggered the run (a raw event carries its JST ``date``; the
# trades_spec_daily event its ``start``..``end``: the days whose flows changed); otherwise (a manual
# run without conf) the run's JST logical date. The build writes a partition for every daily_quotes
# date in the range, reading all earlier history, so rebuilding a range is idempotent and equals
# building its days one by one.
#
# Where it runs: gogooku3.containers.plan_task_runtime asks the Docker engine: a GPU container (cuDF +
# RMM pool) when the engine honours a GPU device request and the GPU image is present, else the same
# build in the CPU image, else (no engine reachable at all) the same CLI in-process. The reason is
# logged as a warning whenever the run is not on a GPU, so a CPU fallback never goes unnoticed.


def dates_from_asset_events(events: Mapping[Any, Any] | None) -> tuple[dt.date, dt.date] | None:
    """The date range covered by the triggering asset events' extras (None without any)."""
    days: list[dt.date] = []
    for asset_events in (events or {}).values():
        for event in asset_events:
            extra = getattr(event, "extra", None) or {}
            for key in ("date", "start", "end"):
                if extra.get(key):
                    days.append(dt.date.fromisoformat(str(extra[key])))
    return (min(days), max(days)) if days else None


def feature_range(
    *, logical_date: dt.datetime | None, dag_run: Any, triggering_asset_events: Any
) -> tuple[dt.date, dt.date, str | None]:
    """``(start, end, engine)``: the conf's, else the triggering events', else the logical date's."""
    conf = parse_conf(FEATURES_DAILY_CONF, dag_run)
    if (chosen := date_range(conf)) is not None:
        return chosen[0], chosen[1], conf.get("engine")
    if (triggered := dates_from_asset_events(triggering_asset_events)) is not None:
        return triggered[0], triggered[1], None
    day = _day(logical_date, dag_run)
    return day, day, None


def plan_feature_build(
    *, logical_date: dt.datetime | None, dag_run: Any, triggering_asset_events: Any
) -> dict[str, Any]:
    """Decide GPU container / CPU container / in-process for this run and log why."""
    from gogooku3.containers import plan_task_runtime

    start, end, engine = feature_range(
        logical_date=logical_date, dag_run=dag_run, triggering_asset_events=triggering_asset_events
    )
    runtime = plan_task_runtime(want_gpu=engine != "cpu")
    if runtime.mode == "gpu":
        log.info("feature build: GPU container %s (%s)", runtime.image, runtime.reason)
    elif runtime.mode == "cpu":
        log.warning(
            "feature build: engine has no GPU runtime; running the same image on CPU: %s", runtime.reason
        )
    else:
        log.warning(
            "feature build: NO DOCKER ENGINE; running the feature build IN-PROCESS: %s", runtime.reason
        )
    if engine == "gpu" and runtime.mode != "gpu":
        raise _fail(f"dag_run.conf asked for engine 'gpu' but {runtime.reason}")
    return {
        "start": start.isoformat(),
        "end": end.isoformat(),
        "mode": runtime.mode,
        "image": runtime.image,
        "engine": "gpu" if runtime.use_gpu else "cpu",
        "reason": runtime.reason,
    }


def choose_build(plan: Mapping[str, Any]) -> str:
    """The build task to follow: the container, or the in-process fallback."""
    return "build_features_in_process" if plan["mode"] == "in-process" else "build_features"


def build_features_in_process(plan: Mapping[str, Any]) -> str:
    """The fallback where no Docker engine is reachable at all: the same library call as the CLI's."""
    from gogooku3.features.job import run_build, summarize
    from gogooku3_airflow.hooks import task_settings

    log.warning("feature build IN-PROCESS (no Docker engine): %s", plan["reason"])
    start, end = dt.date.fromisoformat(plan["start"]), dt.date.fromisoformat(plan["end"])
    return summarize(run_build(start, end, plan["engine"], None, task_settings()))


def built_days(lake: Any, plan: Mapping[str, Any]) -> list[dt.date]:
    """The daily_quotes dates in the plan's range: the partitions the build must have written."""
    start, end = dt.date.fromisoformat(plan["start"]), dt.date.fromisoformat(plan["end"])
    return [d for d in lake.list_partitions("raw", "daily_quotes") if start <= d <= end]


def gate_features(plan: Mapping[str, Any]) -> list[str]:
    """The features suite on every built partition (row count against the listed universe); a
    failure alerts Slack with the failing expectations and stops the run (:mod:`.gates`)."""
    from gogooku3.quality import expected_rows_from_listed_info
    from gogooku3_airflow.gates import gate_days
    from gogooku3_airflow.hooks import task_settings

    lake = _lake(task_settings())
    return gate_days(
        lake,
        "features",
        "features",
        built_days(lake, plan),
        expected_rows=lambda d: expected_rows_from_listed_info(lake, d),
        build_docs=True,
    )


def publish_features(plan: Mapping[str, Any], gated: Sequence[str], *, outlet_events: Any) -> dict[str, Any]:
    """One event for the features asset: the gated range, rows and where it was built."""
    from gogooku3_airflow.hooks import task_settings

    settings = task_settings()
    lake = _lake(settings)
    rows = sum(lake.read_manifest("features", "features", d).rows for d in gated)
    extra = {
        "start": plan["start"],
        "end": plan["end"],
        "days": len(gated),
        "rows": rows,
        "engine": plan["engine"],
        "mode": plan["mode"],
        "lake_uri": settings.lake_uri,
    }
    outlet_events[FEATURES].extra.update(extra)
    log.info(
        "published %s %s..%s: %d rows on %s", FEATURES.uri, plan["start"], plan["end"], rows, plan["mode"]
    )
    return extra


# ============================================================================== walk_forward_retrain
#
# What a run trains on: dag_run.conf {"start", "end"} when given; otherwise the latest good features
# (the newest partition that passed the features gate) and the RETRAIN_HISTORY_DAYS trading days of
# features before it. Features older than the previous trading day fail the run, saying how stale.
#
# Where: the same runtime plan as the feature build (GPU container, else the same image on CPU, else
# in-process); on CPU the size is tiny unless the conf names one. The run folder is in the lake,
# models/atft-gat-fan/runs/<run id>/, so a retried training task resumes at its first unfinished fold.

#: Default training history: about three years of trading days before the latest good features.
RETRAIN_HISTORY_DAYS = 750
#: Where a retrain's walk-forward folder lives, relative to the lake root.
RETRAIN_RUNS_DIR = "models/atft-gat-fan/runs"


def retrain_run_folder(run_id: str) -> str:
    """The lake-relative folder of a DAG run's training (the run id made path-safe)."""
    import re

    return f"{RETRAIN_RUNS_DIR}/{re.sub(r'[^A-Za-z0-9._-]+', '_', run_id)}"


def retrain_range(lake: Any, day: dt.date, conf: Mapping[str, Any]) -> tuple[dt.date, dt.date]:
    """``(start, end)`` of the features to train on (see the section comment); raises
    ``AirflowFailException`` for stale or missing features."""
    latest = lake.latest_good("features", "features")
    if latest is None:
        raise _fail(
            f"features/features in lake {lake.uri} has no partition that passed its gate: nothing to train on"
        )
    chosen = date_range(conf)
    if chosen is not None:
        if chosen[1] > latest:
            raise _fail(
                f"dag_run.conf['end'] {chosen[1]} is after the latest good features day {latest}: "
                "build and gate those features first"
            )
        return chosen
    wanted = previous_trading_day(day)
    if latest < wanted:
        behind = len(trading_days(latest, wanted)) - 1
        raise _fail(
            f"features are stale: the latest good features day is {latest}, {behind} trading day(s) "
            f"before {wanted} (the last trading day before this {day} run); fix features_daily first"
        )
    days = [d for d in lake.list_partitions("features", "features") if d <= latest]
    return days[max(0, len(days) - RETRAIN_HISTORY_DAYS)], latest


def plan_retrain(*, logical_date: dt.datetime | None, dag_run: Any) -> dict[str, Any]:
    """The retrain's range, settings and runtime (GPU container / CPU container / in-process), logged
    with the reason whenever it is not on a GPU."""
    from gogooku3.containers import plan_task_runtime
    from gogooku3_airflow.hooks import task_settings
    from gogooku3_airflow.runconf import WALK_FORWARD_RETRAIN_CONF

    conf = parse_conf(WALK_FORWARD_RETRAIN_CONF, dag_run)
    settings = task_settings()
    lake = _lake(settings)
    start, end = retrain_range(lake, _day(logical_date, dag_run), conf)
    runtime = plan_task_runtime(want_gpu=True)
    size = conf.get("size")
    if runtime.mode == "gpu":
        log.info("retrain: GPU container %s (%s)", runtime.image, runtime.reason)
        size = size or "base"
    else:
        where = "IN-PROCESS (no Docker engine)" if runtime.mode == "in-process" else f"{runtime.image} on CPU"
        size_note = (
            f"size {size} as dag_run.conf asks" if size else "size tiny (dag_run.conf 'size' overrides)"
        )
        log.warning("retrain: no GPU runtime, training %s with %s: %s", where, size_note, runtime.reason)
        size = size or "tiny"
    return {
        "start": start.isoformat(),
        "end": end.isoformat(),
        "folds": conf.get("folds", 4),
        "size": size,
        "horizons": list(conf.get("horizons", (1, 5, 10, 20))),
        "epochs": conf.get("epochs", 30),
        "seed": conf.get("seed", 0),
        "out": retrain_run_folder(dag_run.run_id),
        "mode": runtime.mode,
        "image": runtime.image,
        "engine": "gpu" if runtime.use_gpu else "cpu",
        "reason": runtime.reason,
    }


def run_folder_uri(plan: Mapping[str, Any], lake: str) -> str:
    """Where the plan's training writes its run folder in ``lake`` (a path or an ``s3://`` URI)."""
    return f"{lake.rstrip('/')}/{plan['out']}"


def train_cli_args(plan: Mapping[str, Any], lake: str) -> list[str]:
    """``gogooku3 train`` for the plan on ``lake`` (the container's ``/lake`` or the worker's URI);
    the in-process fallback runs the very same command line."""
    return [
        "train",
        "--start",
        plan["start"],
        "--end",
        plan["end"],
        "--folds",
        str(plan["folds"]),
        "--size",
        plan["size"],
        "--horizons",
        ",".join(str(h) for h in plan["horizons"]),
        "--max-epochs",
        str(plan["epochs"]),
        "--patience",
        str(min(9, plan["epochs"])),
        "--seed",
        str(plan["seed"]),
        "--device",
        "cuda" if plan["engine"] == "gpu" else "cpu",
        "--lake",
        lake,
        "--out",
        run_folder_uri(plan, lake),
    ]


def choose_training(plan: Mapping[str, Any]) -> str:
    return "train_in_process" if plan["mode"] == "in-process" else "train"


def train_in_process(plan: Mapping[str, Any]) -> str:
    """The fallback where no Docker engine is reachable: the same CLI command, in this process."""
    from gogooku3.cli import app
    from gogooku3_airflow.hooks import task_settings

    log.warning("retrain IN-PROCESS (no Docker engine): %s", plan["reason"])
    args = train_cli_args(plan, task_settings().lake_uri)
    try:
        app(args, standalone_mode=False)
    except SystemExit as exc:  # the CLI's own refusal (bad input) exits 2 with its message logged
        if exc.code:
            raise _fail(f"gogooku3 {' '.join(args)} exited {exc.code}") from None
    return plan["out"]


@contextlib.contextmanager
def _finished_run(plan: Mapping[str, Any], settings: Any) -> Iterator[Path]:
    """The plan's finished run folder as a local directory: in place on a local lake, downloaded
    into a temporary directory from an ``s3://`` lake (removed afterwards)."""
    from gogooku3.training.runstore import download_run
    from gogooku3_airflow.operators import local_lake_path

    root = local_lake_path(settings.lake_uri)
    if root is not None:
        yield Path(root) / plan["out"]
        return
    with tempfile.TemporaryDirectory(prefix="gogooku3-retrain-") as tmp:
        try:
            folder = download_run(run_folder_uri(plan, settings.lake_uri), Path(tmp) / "run", settings.s3)
        except FileNotFoundError as exc:  # an unfinished run: nothing a retry of register fixes
            raise _fail(str(exc)) from None
        yield folder


def register_model(plan: Mapping[str, Any], *, dag_run: Any) -> dict[str, Any]:
    """Record the finished training in MLflow (a parent run, a nested run per fold) and register the
    network as a new version aliased ``challenger``; a retry finds the recorded run instead."""
    from gogooku3.tracking.runlog import git_commit, log_walk_forward
    from gogooku3_airflow.hooks import task_settings

    settings = task_settings()
    tags = {
        "git_commit": git_commit(),
        "image": plan["image"] or "in-process",
        "engine": plan["engine"],
        "airflow_dag_id": "walk_forward_retrain",
        "airflow_run_id": dag_run.run_id,
    }
    try:
        with _finished_run(plan, settings) as run_folder:
            logged = log_walk_forward(
                run_folder, settings.mlflow, tags=tags, key_extra={"airflow_run_id": dag_run.run_id}
            )
    except ValueError as exc:  # RunLogError, ConfigError: nothing a retry fixes
        raise _fail(f"{type(exc).__name__}: {exc}") from None
    return {
        "run_id": logged.run_id,
        "version": logged.model_version,
        "experiment_id": logged.experiment_id,
        "tracking_uri": settings.mlflow.tracking_uri,
    }


def promote_model(registered: Mapping[str, Any]) -> dict[str, Any]:
    """Champion/challenger for the registered version (:func:`gogooku3.tracking.registry.promote`);
    the decision goes to Slack as a notice either way. Runs in the one-slot promotion pool."""
    from gogooku3.alerts import send_notice
    from gogooku3.tracking.registry import promote
    from gogooku3.training.promotion import PromotionPolicy
    from gogooku3_airflow.hooks import SlackAlertsHook, task_settings

    settings = task_settings()
    result = promote(
        settings.mlflow, _lake(settings), PromotionPolicy(), challenger_version=registered["version"]
    )
    d = result.decision
    if d.promote:
        title = f"{result.model_name} v{result.challenger_version} promoted to champion"
    else:
        live = f"v{result.champion_after}" if result.champion_after else "no champion"
        title = f"{result.model_name} v{result.challenger_version} not promoted ({live} stays live)"
    lines = [
        result.message(),
        f"MLflow: {registered['tracking_uri']}/#/models/{result.model_name}/versions/{registered['version']}",
    ]
    client = SlackAlertsHook(settings=settings.slack).client if settings.slack.configured else None
    send_notice(title, lines, settings.slack, client=client, logger=log)
    return {**d.to_dict(), "version": result.challenger_version, "champion": result.champion_after}


def publish_model(
    promoted: Mapping[str, Any], registered: Mapping[str, Any], *, outlet_events: Any
) -> dict[str, Any]:
    """One event for the model asset: the new version, the champion now, and the decision."""
    from gogooku3_airflow.assets import MODEL_ATFT_GAT_FAN

    extra = {
        "version": registered["version"],
        "champion": promoted["champion"],
        "promoted": promoted["promote"],
        "mlflow_run_id": registered["run_id"],
        "challenger_rank_ic_1d": promoted["challenger_rank_ic"],
    }
    outlet_events[MODEL_ATFT_GAT_FAN].extra.update(extra)
    return extra
