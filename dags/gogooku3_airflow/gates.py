"""Quality-gate tasks: run the great-expectations suites of :mod:`gogooku3.quality` on lake
partitions and stop the run on a failure.

A failed gate raises :class:`QualityGateStop`, an ``AirflowFailException`` (no retry: the data would
not change), so nothing downstream runs. Its message lists every failing day and expectation with
its counts, and the DAGs' standard failure callback sends that list to Slack: for a
:class:`QualityGateStop` the alert carries up to :data:`GATE_ALERT_LINES` lines instead of an error's
usual first few (see :mod:`gogooku3_airflow.callbacks`).

The library saves the validation result and the Data Docs next to every gated partition, and marks a
partition as the latest good one only when it passed, so nothing downstream ever reads a partition
that failed.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from airflow.sdk.exceptions import AirflowFailException

log = logging.getLogger(__name__)

#: How much of a gate failure its alert carries (Slack caps a section's text at 3,000 characters).
GATE_ALERT_LINES = 40
GATE_ALERT_CHARS = 2800


class QualityGateStop(AirflowFailException):
    """A gate failed: stops the run without retries; the message lists what failed."""


def gate_failure_message(failures: Mapping[str, list[str]], where: str) -> str:
    """The gate's error: the failing days, then one line per day and failing expectation (with its
    counts), so the first lines say what failed."""
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
    """Gate every partition of ``days``; return the passed days (ISO) or raise
    :class:`QualityGateStop` listing every failing day and expectation (all days are gated first, so
    alert says it all).

    A missing partition is a failure naming it, not a skip: the task that should have written it
    reported success.
    """
    from gogooku3.lake import MissingPartitionError
    from gogooku3.quality import QualityGateFailed, gate_partition

    failures: dict[str, list[str]] = {}
    passed: list[str] = []
    for day in days:
        key = day.isoformat()
        try:
            outcome = gate_partition(
                lake,
                layer,
                dataset,
                day,
                suite,
                expected_rows=expected_rows(day) if expected_rows else None,
                build_docs=build_docs,
            )
            passed.append(key)
            log.info("quality gate passed for %s/%s %s: %s", layer, dataset, key, outcome.validation_uri)
        except QualityGateFailed as exc:
            failures[key] = list(exc.result.summary_lines())
        except MissingPartitionError as exc:
            failures[key] = [f"missing partition: {exc}"]
    if failures:
        message = gate_failure_message(failures, f"{layer}/{dataset} in {lake.uri}")
        log.error("%s", message)
        raise QualityGateStop(message)
    log.info("quality gate passed for %s/%s on %d partition(s)", layer, dataset, len(passed))
    return passed
