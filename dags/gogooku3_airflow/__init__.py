"""Airflow glue for gogooku3, split by role the way Airflow's provider packages are:

=================  ===================================================================================
module             what it is
=================  ===================================================================================
``hooks``          connections (J-Quants, S3 lake, Slack, MLflow) -> the library's typed settings; the
                   settings a task runs with (:func:`~gogooku3_airflow.hooks.task_settings`)
``operators``      the task containers: ``TaskContainerOperator``, ``FeatureBuildOperator``,
                   ``RetrainOperator``
``timetables``     the trading-day, publication-day and weekly timetables; the JST day a run covers
``runconf``        the one ``dag_run.conf`` parser and each DAG's schema
``callbacks``      the Slack failure callback
``gates``          quality-gate glue: ``QualityGateStop`` and gating a list of partitions
``assets``         the lake's Airflow Assets
``tasks``          the TaskFlow tasks' bodies, which call the library
``defaults``       conventions every DAG shares (owner, retries, callback, start date)
=================  ===================================================================================

This package lives next to the DAG files (the DAG processor puts ``dags/`` on ``sys.path``) and is
excluded from DAG parsing by ``dags/.airflowignore``. It is the only place where Airflow meets the
library: :mod:`gogooku3` itself never imports Airflow. Keep module imports light (no polars,
aiohttp, boto3 at import time): DAG files import this package on every parse.
"""

#: Pool capping concurrent J-Quants API tasks across all runs and DAGs. Its size is defined once, in
#: include/airflow/pools.json, which the scripts import (``airflow pools import``).
JQUANTS_POOL = "jquants_api"
#: Pool of one slot for the champion/challenger promotion: two at once could both move the alias.
PROMOTION_POOL = "model_promotion"
#: Owner shown in the UI for the project's DAGs.
OWNER = "gogooku3-data"
#: The raw datasets ``jquants_daily`` fetches, in dependency order: the trading calendar first (the
#: exchange decides whether the day is a trading day, gogooku3.exchange_calendar), then listed_info
#: (the gate counts daily_quotes against that day's listed universe), then the rest.
JQUANTS_DAILY_DATASETS = (
    "trading_calendar",
    "listed_info",
    "daily_quotes",
    "statements",
    "topix",
    "indices",
    "short_selling",
    "weekly_margin_interest",
    "earnings_calendar",
    "dividends",
    "futures",
    "index_option",
    "daily_margin_interest",
    "short_selling_positions",
)
#: The datasets of ``jquants_daily`` with a raw great-expectations suite (include/expectations/),
#: each gated by its own ``gate_<dataset>`` task between its fetch and the publish.
JQUANTS_DAILY_GATED = (
    "daily_quotes",
    "indices",
    "short_selling",
    "weekly_margin_interest",
    "earnings_calendar",
    "dividends",
    "futures",
    "index_option",
    "daily_margin_interest",
    "short_selling_positions",
)
