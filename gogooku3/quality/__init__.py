"""Quality gates (great-expectations 1.x) for the lake's datasets.

::

    from gogooku3.quality import run_gate, gate_partition, QualityGateFailed

    result = run_gate("daily_quotes", df, logical_date=day, expected_rows=n_listed)
    result.passed, result.summary_lines(), result.data_docs_html["index.html"]
    gate_partition(lake, "raw", "daily_quotes", day, expected_rows=n_listed)  # raises QualityGateFailed

Suites live in ``include/expectations/`` (:mod:`gogooku3.quality.suites`). Importing this package
does not import Great Expectations; only running a gate does.
"""

from gogooku3.quality.gate import (
    FailedExpectation,
    GateOutcome,
    GateResult,
    QualityGateFailed,
    expected_rows_from_listed_info,
    gate_partition,
    run_gate,
)
from gogooku3.quality.suites import SUITE_NAMES, load_suite, write_suites

__all__ = [
    "SUITE_NAMES",
    "FailedExpectation",
    "GateOutcome",
    "GateResult",
    "QualityGateFailed",
    "expected_rows_from_listed_info",
    "gate_partition",
    "load_suite",
    "run_gate",
    "write_suites",
]
