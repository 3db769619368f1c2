"""Daily J-Quants fetch into the lake's raw layer, one run per JPX trading day.

Schedule: :class:`~gogooku3_airflow.timetables.JpxTradingDayTimetable`, 19:00 JST on every trading day
(after the day's bars, TOPIX, listed info and 18:00 statements are published; the 24:30 statements
batch is picked up by the next run's statements task, see the timetable's docstring). The run for
trading day D has the data interval [D 00:00 JST, D+1 00:00 JST); every task fetches the JST date D.
``catchup=True``: unpausing, or ``airflow backfill create``, fetches every trading day since the
start date; ``max_active_runs`` bounds parallel runs and the ``jquants_api`` pool bounds concurrent
API tasks across them, while the client's cross-process pacer keeps the request *rate* under the
plan's limit.

Tasks: ``trading_calendar`` (J-Quants' calendar, a snapshot the run's other tasks follow: on a day
the exchange closed against the rule, e.g. a system failure, they skip) -> ``listed_info`` ->
``daily_quotes``, ``statements``, ``topix``, ``indices``,
``short_selling``, ``weekly_margin_interest`` (the record published that day; skipped on other
days), ``earnings_calendar``, ``dividends``, ``futures``, ``index_option``, ``daily_margin_interest``, ``short_selling_positions`` (one
``fetch`` task each; statements and dividends
also fetch again since the previous trading day for the 24:30 batch) -> ``publish`` (asset events for the raw
tables, see :mod:`gogooku3_airflow.assets`), with a ``gate_<dataset>`` task (the dataset's raw
great-expectations suite; daily_quotes' rows counted against the day's listed universe) between
each dataset of ``JQUANTS_DAILY_GATED`` and ``publish``: a failed gate alerts Slack with the failing
expectations and nothing is published.

``dag_run.conf`` (optional): ``{"endpoints": ["daily_quotes", ...]}`` fetches only those datasets;
anything else fails the run at its first task with a message naming the bad key or name.

Connections: ``jquants`` (base URL, credentials, plan), ``s3_lake`` (for an ``s3://`` lake),
``slack_alerts`` (failure alerts); without them, ``GOGOOKU3_*``/``JQUANTS_*`` env vars are used.
"""

from __future__ import annotations

from airflow.sdk import dag, task
from gogooku3_airflow import JQUANTS_DAILY_DATASETS, JQUANTS_DAILY_GATED, JQUANTS_POOL, tasks
from gogooku3_airflow.assets import JQUANTS_DAILY_RAW
from gogooku3_airflow.defaults import START_DATE, default_args
from gogooku3_airflow.timetables import JpxTradingDayTimetable


@dag(
    dag_id="jquants_daily",
    schedule=JpxTradingDayTimetable(),
    start_date=START_DATE,
    catchup=True,
    max_active_runs=4,
    default_args=default_args(),
    tags=["gogooku3", "jquants", "raw", "daily"],
    doc_md=__doc__,
)
def jquants_daily():
    @task(pool=JQUANTS_POOL)
    def fetch(dataset: str, logical_date=None, dag_run=None):
        return tasks.fetch_dataset(dataset, logical_date=logical_date, dag_run=dag_run)

    @task(trigger_rule="none_failed")
    def gate(dataset: str, logical_date=None, dag_run=None):
        return tasks.gate_raw(dataset, logical_date=logical_date, dag_run=dag_run)

    # none_failed: a dataset skipped via dag_run.conf does not block publishing the others.
    @task(outlets=[JQUANTS_DAILY_RAW], trigger_rule="none_failed", pool="asset_publish")
    def publish(logical_date=None, dag_run=None, outlet_events=None):
        return tasks.publish_raw(
            JQUANTS_DAILY_RAW, logical_date=logical_date, dag_run=dag_run, outlet_events=outlet_events
        )

    fetched = {name: fetch.override(task_id=name)(name) for name in JQUANTS_DAILY_DATASETS}
    calendar = fetched.pop("trading_calendar")
    listed = fetched.pop("listed_info")
    calendar >> listed >> list(fetched.values())
    gates = []
    for name in JQUANTS_DAILY_GATED:
        gates.append(gate.override(task_id=f"gate_{name}")(name))
        fetched[name] >> gates[-1]
    [*fetched.values(), *gates] >> publish()


jquants_daily()
