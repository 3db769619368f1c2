"""Airflow glue for gogooku3: connections -> settings, the JPX trading-day timetable, the Slack
failure callback, lake assets and the fetch tasks' bodies.

This package lives next to the DAG files (the DAG processor puts ``dags/`` on ``sys.path``) and is
excluded from DAG parsing by ``dags/.airflowignore``. It is the only place where Airflow meets the
library: :mod:`gogooku3` itself never imports Airflow. Keep module imports light (no polars,
aiohttp, boto3 at import time): DAG files import this package on every parse.
"""

#: Pool capping concurrent J-Quants API tasks across all runs and DAGs. Its size is defined once, in
#: include/airflow/pools.json, which the scripts import (``airflow pools import``).
JQUANTS_POOL = "jquants_api"
#: Owner shown in the UI for the project's DAGs.
OWNER = "gogooku3-data"
