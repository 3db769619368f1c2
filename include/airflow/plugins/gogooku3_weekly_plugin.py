"""Airflow plugin registering the trades_spec publication-day timetable.

A separate plugin next to ``gogooku3_plugin.py`` (which registers the trading-day timetable and
puts the DAG folder on ``sys.path``; this file does the same so it does not depend on load order).
The class is registered under the import path the DAG uses,
``gogooku3_airflow.weekly.JpxPublicationDayTimetable``.
"""

from __future__ import annotations

import sys

from airflow import settings
from airflow.plugins_manager import AirflowPlugin

if settings.DAGS_FOLDER and settings.DAGS_FOLDER not in sys.path:
    sys.path.append(settings.DAGS_FOLDER)

from gogooku3_airflow.weekly import JpxPublicationDayTimetable  # noqa: E402 - needs the path above


class Gogooku3WeeklyPlugin(AirflowPlugin):
    name = "gogooku3_weekly"
    timetables = [JpxPublicationDayTimetable]
