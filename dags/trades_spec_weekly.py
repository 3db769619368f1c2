"""Weekly investor-type flows (J-Quants trades_spec): fetch the newly published weeks, rebuild their
point-in-time daily expansion, gate it, and publish it as an asset for the feature build.

Schedule: :class:`~gogooku3_airflow.timetables.JpxPublicationDayTimetable`, **18:00 JST on each
scheduled publication day**: the Thursday after each week, or the next JPX trading day when that
Thursday is closed (e.g. 2023-11-23 -> Friday 2023-11-24). J-Quants publishes the week after the
close; 18:00 leaves slack for a late publication (the fetch retries with backoff) and precedes the
daily DAG's 19:00 run. The logical date is the publication day at 00:00 JST (data interval = that
JST day). ``catchup=True`` backfills every publication day since the start date.

Tasks (bodies in :mod:`gogooku3_airflow.tasks`, library in :mod:`gogooku3.flows`):

1. ``fetch_trades_spec``: one ranged request for the calendar days since the previous scheduled
   publication (at least the 7 days ending on the publication day, so off-schedule revisions are
   caught) -> ``raw/trades_spec/date=<PublishedDate>/`` for every day of the window (empty when
   nothing was published that day). Pool ``jquants_api``.
2. ``expand``: ``interim/trades_spec_daily`` for the trading days from the window's first usable
   day through the next publication day: final through ``last_determined_day(P)``, provisional
   after that until the next run rewrites them (see :func:`gogooku3_airflow.tasks.expand_range`).
3. ``gate``: the ``trades_spec_daily`` quality gate on every written partition; a failure fails the
   run without retry and the Slack alert lists the failing expectations.
4. ``publish``: an event for the asset ``gogooku3://lake/interim/trades_spec_daily`` whose extra
   holds the range (start, end, final_through), rows and day count.

``dag_run.conf`` (optional): ``{"start": "YYYY-MM-DD", "end": "YYYY-MM-DD"}`` re-expands that range
from the raw layer without fetching; any other shape fails the run naming the bad key.
"""

from __future__ import annotations

from airflow.sdk import dag, task
from gogooku3_airflow import JQUANTS_POOL, tasks
from gogooku3_airflow.assets import INTERIM_TRADES_SPEC_DAILY
from gogooku3_airflow.defaults import START_DATE, default_args
from gogooku3_airflow.timetables import JpxPublicationDayTimetable


@dag(
    dag_id="trades_spec_weekly",
    schedule=JpxPublicationDayTimetable(),
    start_date=START_DATE,
    catchup=True,
    # Runs rewrite overlapping interim days; one at a time keeps a backfill's writes in date order.
    max_active_runs=1,
    default_args=default_args(),
    tags=["gogooku3", "jquants", "raw", "interim", "weekly"],
    doc_md=__doc__,
)
def trades_spec_weekly():
    @task(pool=JQUANTS_POOL)
    def fetch_trades_spec(logical_date=None, dag_run=None):
        return tasks.fetch_trades_spec(logical_date=logical_date, dag_run=dag_run)

    @task
    def expand(fetched):
        return tasks.expand_trades_spec(fetched)

    @task
    def gate(expanded):
        return tasks.gate_trades_spec(expanded)

    @task(outlets=[INTERIM_TRADES_SPEC_DAILY], pool="asset_publish")
    def publish(expanded, logical_date=None, dag_run=None, outlet_events=None):
        return tasks.publish_trades_spec(
            expanded, logical_date=logical_date, dag_run=dag_run, outlet_events=outlet_events
        )

    expanded = expand(fetch_trades_spec())
    gate(expanded) >> publish(expanded)


trades_spec_weekly()
