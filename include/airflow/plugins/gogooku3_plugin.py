"""Airflow plugin registering gogooku3's timetables (trading-day, publication-day and weekly).

Airflow 3 only deserializes a DAG whose schedule is a custom timetable when a plugin registers the
class, under the import path the DAG used (``gogooku3_airflow.timetables.<class>``). The classes live
in the glue package next to the DAG files (``dags/gogooku3_airflow``), which the DAG processor
imports from the DAG folder. The scheduler and API server load plugins without the DAG folder on
``sys.path``, so this file puts it there first, exactly as the DAG processor does, so every process
imports the one class under the same name.

``AIRFLOW__CORE__PLUGINS_FOLDER`` points at this directory (``include/airflow/plugins``) in the one
local Airflow environment (:mod:`gogooku3.devtools.airflow_env`) and in the compose file.
"""

from __future__ import annotations

import sys

from airflow import settings
from airflow.plugins_manager import AirflowPlugin

if settings.DAGS_FOLDER and settings.DAGS_FOLDER not in sys.path:
    sys.path.append(settings.DAGS_FOLDER)

from gogooku3_airflow.timetables import (  # noqa: E402 - needs the path above
    JpxPublicationDayTimetable,
    JpxTradingDayTimetable,
    JstWeeklyTimetable,
)


class Gogooku3Plugin(AirflowPlugin):
    name = "gogooku3"
    timetables = [JpxTradingDayTimetable, JpxPublicationDayTimetable, JstWeeklyTimetable]
