"""Quality-gate tasks: run the great-expectations suites of :mod:`gogooku3.quality` on lake
partitions and stop the run on a failure.

A failed gate raises ``AirflowFailException`` (no retry: the data would not change) whose first lines
name the failing days and expectations with their counts; the DAGs' standard failure callback sends
exactly those lines to Slack, so an alert always says what failed. The library saves the validation
result and the Data Docs next to every gated partition, and marks a partition as the latest good one
only when it passed, so nothing downstream ever reads a partition that failed.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

log = logging.getLogger(__name__)


def gate_failure_message(failures: Mapping[str, list[str]], where: str) -> str:
    """The gate's error: the failing days and expectations in its first lines (the Slack alert
    shows an error's first lines)."""
    lines: list[str] = []
    for day, expectations in failures.items():
        lines.extend(f"{day}: {e}" for e in expectations)
    return f"QualityGateFailed: {where} failed on {len(failures)} day(s) {sorted(failures)}\n" + "\n".join(
        lines
    )


def gate_days(
    lake: Any,
    layer: str,
    dataset: str,
    days: Iterable[dt.date],
    *,
    suite: str | None = None,
    expected_rows: Callable[[dt.date], int | None] | None = None,
    build_docs: bool = True,
) -> list[str]:
    """Gate every partition of ``days``; return the passed days (ISO) or raise AirflowFailException
    listing every failing day and expectation (all days are gated first, so one alert says it all).

    A missing partition is a failure naming it, not a skip: the task that should have written it
    reported success.
    """
    from airflow.sdk.exceptions import AirflowFailException

    from gogooku3.lake import MissingPartitionError
    from gogooku3.quality import QualityGateFailed, gate_partition

    failures: dict[str, list[str]] = {}
    passed: list[str] = []
    for day in days:
        key = day.isoformat()
        try:
            gate_partition(
                lake,
                layer,
                dataset,
                day,
                suite,
                expected_rows=expected_rows(day) if expected_rows else None,
                build_docs=build_docs,
            )
            passed.append(key)
        except QualityGateFailed as exc:
            failures[key] = list(exc.result.summary_lines())
        except MissingPartitionError as exc:
            failures[key] = [f"missing partition: {exc}"]
    if failures:
        raise AirflowFailException(gate_failure_message(failures, f"{layer}/{dataset} in {lake.uri}"))
    log.info("quality gate passed for %s/%s on %d partition(s)", layer, dataset, len(passed))
    return passed


def daily_quotes_gate_task(context: Mapping[str, Any], datasets: Iterable[str]) -> list[str]:
    """``jquants_daily``'s gate on the raw ``daily_quotes`` partition it wrote, with the row count
    checked against that day's listed universe (``raw/listed_info``). Skips, with the reason, when
    the run did not fetch daily_quotes (``dag_run.conf``) or the day is not a trading day."""
    from airflow.sdk.exceptions import AirflowSkipException

    from gogooku3.calendar import is_trading_day
    from gogooku3.lake import open_lake
    from gogooku3.quality import expected_rows_from_listed_info
    from gogooku3_airflow.fetching import _run_options, _settings, jst_day

    if "daily_quotes" not in _run_options(context, tuple(datasets)).endpoints:
        raise AirflowSkipException("dag_run.conf did not ask for daily_quotes: nothing to gate")
    day = jst_day(context)
    if not is_trading_day(day):
        raise AirflowSkipException(f"{day.isoformat()} is not a JPX trading day: nothing to gate")
    settings = _settings()
    lake = open_lake(settings.lake_uri, settings.s3)
    return gate_days(
        lake, "raw", "daily_quotes", [day], expected_rows=lambda d: expected_rows_from_listed_info(lake, d)
    )
