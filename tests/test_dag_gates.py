"""The gate glue: a failing gate stops the run with an AirflowFailException (QualityGateStop), saves its
validation, marks nothing good, and the DAGs' standard failure callback sends one Slack alert (to a real
capture server) listing every failing day and expectation with its counts - more than the first few
lines an ordinary error's alert carries."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

import pendulum
import polars as pl
import pytest
from airflow.sdk.exceptions import AirflowFailException
from gogooku3_airflow.callbacks import on_task_failure
from gogooku3_airflow.gates import QualityGateStop, gate_days

from gogooku3.devtools.slack_capture import running_slack_capture
from gogooku3.lake import open_lake
from gogooku3.market import MarketConfig, generate_market

D = dt.date
DAY1, DAY2 = D(2024, 2, 14), D(2024, 2, 15)
TOKEN = "xoxb-gate-test-token"


@pytest.fixture(scope="module")
def market():
    return generate_market(MarketConfig(seed=5, n_codes=60, start=D(2024, 1, 1), end=D(2024, 2, 29)))


@pytest.fixture
def slack(monkeypatch: pytest.MonkeyPatch):
    with running_slack_capture(expected_token=TOKEN) as capture:
        monkeypatch.setenv("GOGOOKU3_SLACK_TOKEN", TOKEN)
        monkeypatch.setenv("GOGOOKU3_SLACK_BASE_URL", capture.base_url)
        yield capture


def task_context(task_id: str = "gate_daily_quotes", exception: BaseException | None = None) -> dict:
    ti = SimpleNamespace(task_id=task_id, dag_id="jquants_daily", try_number=1, log_url="http://x/log")
    context = {
        "ti": ti,
        "task_instance": ti,
        "dag": SimpleNamespace(dag_id="jquants_daily"),
        "run_id": "scheduled__2024-02-14",
        "logical_date": pendulum.datetime(2024, 2, 14, 15, tz="UTC"),
    }
    if exception is not None:
        context["exception"] = exception
    return context


def alert_text(message: dict) -> str:
    return str(message["body"])


def test_failing_gate_stops_and_its_alert_lists_every_failing_expectation(tmp_path, market, slack) -> None:
    lake = open_lake(str(tmp_path / "lake"))
    duplicated = market.frame("daily_quotes", DAY1)
    lake.write_partition("raw", "daily_quotes", DAY1, duplicated.vstack(duplicated.head(3)), source="test")
    # A null burst in the close and an impossible price: a different failure on the second day.
    burst = market.frame("daily_quotes", DAY2).with_columns(
        pl.when(pl.int_range(pl.len()) < 30).then(None).otherwise(pl.col("Close")).alias("Close"),
        pl.when(pl.int_range(pl.len()) == 40).then(-1.0).otherwise(pl.col("Open")).alias("Open"),
    )
    lake.write_partition("raw", "daily_quotes", DAY2, burst, source="test")

    with pytest.raises(AirflowFailException) as err:
        gate_days(lake, "raw", "daily_quotes", [DAY1, DAY2], build_docs=False)
    stop = err.value
    assert isinstance(stop, QualityGateStop)
    message = str(stop)
    assert message.startswith("QualityGateFailed: raw/daily_quotes")
    assert "['2024-02-14', '2024-02-15']" in message.splitlines()[0]
    assert "2024-02-14: - expect_compound_columns_to_be_unique(Date,Code)" in message
    assert "2024-02-15: - expect_column_values_to_not_be_null(Close): 30 of 60 rows unexpected" in message

    # Nothing that failed is good; the validations are kept next to the data.
    assert lake.latest_good("raw", "daily_quotes") is None
    for day in (DAY1, DAY2):
        assert "gx/validation.json" in lake.list_artifacts("raw", "daily_quotes", day)

    # The task fails; the standard failure callback sends the whole list, not an error's first lines.
    assert len(message.splitlines()) > 5
    last_line = message.splitlines()[-1].split(": ", 1)[1]
    assert slack.messages() == []
    on_task_failure(task_context(exception=stop))
    (alert,) = slack.messages()
    text = alert_text(alert)
    assert "gate_daily_quotes" in text and "jquants_daily" in text
    assert "expect_compound_columns_to_be_unique(Date,Code)" in text
    assert "expect_column_values_to_not_be_null(Close): 30 of 60 rows unexpected" in text
    assert last_line in text, "the alert was cut before the last failing expectation"
    assert TOKEN not in text


def test_an_ordinary_error_alert_keeps_only_its_first_lines(slack) -> None:
    error = RuntimeError("\n".join(f"line {i}" for i in range(1, 12)))
    on_task_failure(task_context(exception=error))
    (alert,) = slack.messages()
    text = alert_text(alert)
    assert "line 1" in text and "line 11" not in text


def test_passing_gate_returns_its_days_and_marks_them_good(tmp_path, market, slack) -> None:
    lake = open_lake(str(tmp_path / "lake"))
    for day in (DAY1, DAY2):
        lake.write_partition("raw", "daily_quotes", day, market.frame("daily_quotes", day), source="test")
        lake.write_partition("raw", "listed_info", day, market.frame("listed_info", day), source="test")
    passed = gate_days(lake, "raw", "daily_quotes", [DAY1, DAY2], build_docs=False)
    assert passed == ["2024-02-14", "2024-02-15"]
    assert lake.latest_good("raw", "daily_quotes") == DAY2
    assert slack.messages() == []


def test_missing_partition_fails_the_gate_naming_it(tmp_path, slack) -> None:
    lake = open_lake(str(tmp_path / "lake"))
    with pytest.raises(QualityGateStop, match="missing partition"):
        gate_days(lake, "features", "features", [DAY2], build_docs=False)
