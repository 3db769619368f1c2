"""What the fetch DAGs' tasks do, kept out of the DAG files so those stay thin and parse fast.

Everything heavy (polars, aiohttp, boto3 via :mod:`gogooku3.fetch` and :mod:`gogooku3.lake`) is
imported inside the functions, at task run time.

* :func:`jst_day` - the JST trading day a run covers, from its data interval.
* :func:`parse_run_conf` - ``dag_run.conf`` validated, naming what is wrong.
* :func:`fetch_task` - fetch one dataset for the run's day into the lake (``jquants_daily``).
* :func:`publish_task` - attach asset events (date, rows, checksum) for what the run wrote.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gogooku3.calendar import is_trading_day, previous_trading_day, to_jst_date

log = logging.getLogger("gogooku3.dags")

#: Allowed keys of ``dag_run.conf``.
RUN_CONF_KEYS = frozenset({"endpoints"})


class RunConfError(ValueError):
    """``dag_run.conf`` is malformed; the message names the key and the bad value."""


@dataclass(frozen=True)
class RunOptions:
    """A run's options from ``dag_run.conf``: which datasets to fetch (default: all of the DAG's)."""

    endpoints: tuple[str, ...]


def parse_run_conf(conf: Mapping[str, Any] | None, datasets: Sequence[str]) -> RunOptions:
    """Validate ``dag_run.conf`` against the DAG's ``datasets``.

    ``{"endpoints": ["daily_quotes", "topix"]}`` restricts the run to those datasets (the others are
    skipped with that reason). Unknown keys and unknown dataset names are errors.
    """
    conf = dict(conf or {})
    unknown_keys = sorted(set(conf) - RUN_CONF_KEYS)
    if unknown_keys:
        raise RunConfError(
            f"dag_run.conf has unknown key(s) {unknown_keys}; allowed: {sorted(RUN_CONF_KEYS)}"
        )
    endpoints = conf.get("endpoints")
    if endpoints is None:
        return RunOptions(endpoints=tuple(datasets))
    if isinstance(endpoints, str) or not isinstance(endpoints, list | tuple) or not endpoints:
        raise RunConfError(
            f"dag_run.conf['endpoints']={endpoints!r} must be a non-empty list of dataset names from {list(datasets)}"
        )
    bad = [e for e in endpoints if not isinstance(e, str) or e not in datasets]
    if bad:
        raise RunConfError(
            f"dag_run.conf['endpoints'] has unknown dataset name(s) {bad}; this DAG fetches {list(datasets)}"
        )
    return RunOptions(endpoints=tuple(dict.fromkeys(endpoints)))


def jst_day(context: Mapping[str, Any]) -> dt.date:
    """The JST date a run covers: the JST date of its logical date.

    Never the UTC date: the run for trading day D has its logical date (= data interval start) at
    D 00:00 JST, which is the previous day in UTC. The logical date is read first because it is
    what every kind of run agrees on (scheduled: the interval start; ``dags test`` and UI triggers:
    the date given; ``airflow dags trigger -l``: the date given, while Airflow infers that run's
    data interval from the trigger time). Runs without a logical date use their data interval's
    start, then their ``run_after``.
    """
    dag_run = context.get("dag_run")
    moment = (
        context.get("logical_date")
        or context.get("data_interval_start")
        or getattr(dag_run, "logical_date", None)
        or getattr(dag_run, "run_after", None)
    )
    if moment is None:
        raise RunConfError("the run has no logical date, data interval or run_after: no day to fetch")
    return to_jst_date(moment)


def fetch_days(dataset: str, day: dt.date) -> list[dt.date]:
    """The days a run for trading day ``day`` fetches for ``dataset``.

    Statements arrive in two batches (18:00 and 24:30 JST); the run at 19:00 sees only the first.
    So the statements task also re-fetches every calendar day since the previous trading day,
    which completes that day's partition with its 24:30 batch and catches disclosures dated on a
    weekend or holiday in between. Rewrites are idempotent. Other datasets: just ``day``.
    """
    if dataset != "statements":
        return [day]
    start = previous_trading_day(day)
    return [start + dt.timedelta(days=i) for i in range((day - start).days + 1)]


def _fail(message: str) -> Exception:
    from airflow.sdk.exceptions import AirflowFailException

    return AirflowFailException(message)


def _run_options(context: Mapping[str, Any], datasets: Sequence[str]) -> RunOptions:
    dag_run = context.get("dag_run")
    try:
        return parse_run_conf(getattr(dag_run, "conf", None), datasets)
    except RunConfError as exc:
        # Not retryable: the same conf fails the same way.
        raise _fail(f"RunConfError: {exc}") from None


def _settings():
    from gogooku3.config import ConfigError
    from gogooku3_airflow.connections import mask_in_task_logs, resolve_settings, secret_values

    try:
        settings = resolve_settings()
        settings.jquants.check_credentials()
    except ConfigError as exc:
        raise _fail(f"ConfigError: {exc}") from None
    mask_in_task_logs(secret_values(settings))
    return settings


def _fetch_into_lake(settings: Any, dataset: str, days: Sequence[dt.date]) -> list[dict[str, Any]]:
    """Fetch ``dataset`` for each of ``days`` into the lake; one JSON-able record per day."""
    from gogooku3.fetch import fetch_to_lake_sync
    from gogooku3.jquants.errors import AuthError

    partitions = []
    for d in days:
        try:
            results = fetch_to_lake_sync(settings, [dataset], d, lake_uri=settings.lake_uri)
        except AuthError as exc:
            raise _fail(f"AuthError: {exc}") from None  # retrying a refused credential cannot help
        for r in results:
            log.info("%s", r.summary())
            partitions.append({"date": r.day.isoformat(), "rows": r.rows, "written": r.written, "uri": r.uri})
    return partitions


def fetch_task(dataset: str, context: Mapping[str, Any], datasets: Sequence[str]) -> dict[str, Any]:
    """Fetch ``dataset`` for the run's JST day into the lake; return a JSON-able summary (XCom)."""
    from airflow.sdk.exceptions import AirflowSkipException

    options = _run_options(context, datasets)
    if dataset not in options.endpoints:
        raise AirflowSkipException(f"{dataset}: not in dag_run.conf['endpoints'] {list(options.endpoints)}")
    day = jst_day(context)
    if not is_trading_day(day):
        raise AirflowSkipException(f"{day.isoformat()} ({day:%A}) is not a JPX trading day: nothing to fetch")
    settings = _settings()
    return {
        "dataset": dataset,
        "date": day.isoformat(),
        "lake_uri": settings.lake_uri,
        "partitions": _fetch_into_lake(settings, dataset, fetch_days(dataset, day)),
    }


def publish_task(
    context: Mapping[str, Any], datasets: Sequence[str], alias: Any
) -> dict[str, dict[str, Any]]:
    """Emit one asset event per raw table the run wrote for its day, through the asset alias.

    Each event's ``extra`` has the JST ``date``, ``rows``, ``checksum`` (of the Parquet file, from the
    partition's manifest, read back from the lake) and the physical ``lake_uri``. Datasets the run
    skipped (``dag_run.conf['endpoints']``) get no event, so downstream DAGs are not triggered by
    data that did not change.
    """
    from gogooku3.lake import open_lake
    from gogooku3_airflow.assets import RAW_ASSETS

    options = _run_options(context, datasets)
    day = jst_day(context)
    if not is_trading_day(day):
        from airflow.sdk.exceptions import AirflowSkipException

        raise AirflowSkipException(f"{day.isoformat()} is not a JPX trading day: nothing to publish")
    settings = _settings()
    lake = open_lake(settings.lake_uri, settings.s3)
    published: dict[str, dict[str, Any]] = {}
    events = context["outlet_events"]
    for name in options.endpoints:
        manifest = lake.read_manifest("raw", name, day)
        extra = {
            "date": day.isoformat(),
            "rows": manifest.rows,
            "checksum": manifest.checksum,
            "schema_hash": manifest.schema_hash,
            "lake_uri": settings.lake_uri,
            "partition": lake.uri_for("raw", name, day),
        }
        events[alias].add(RAW_ASSETS[name], extra=extra)
        published[name] = extra
        log.info("published %s %s: %d rows", RAW_ASSETS[name].uri, day.isoformat(), manifest.rows)
    return published
