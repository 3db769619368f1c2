"""Task failure callback: a Slack alert, formatted by :mod:`gogooku3.alerts` (pure) and sent through the
Slack provider's client (:class:`~gogooku3_airflow.hooks.SlackAlertsHook`).

Used as ``on_failure_callback`` in every DAG's ``default_args``. It runs in the task's process after
the task failed for the last time (retries exhausted or a non-retryable failure). It must never
raise: a broken alert path is logged, and the task's own error stays what Airflow reports.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from typing import Any

from gogooku3.alerts import AlertContext, error_head, send_alert
from gogooku3.calendar import JST
from gogooku3.config import Secret, SlackSettings
from gogooku3_airflow.gates import GATE_ALERT_CHARS, GATE_ALERT_LINES, QualityGateStop
from gogooku3_airflow.timetables import run_day

log = logging.getLogger("gogooku3.alerts")


def _fmt_jst(moment: dt.datetime | None) -> str:
    if moment is None:
        return "(none)"
    return moment.astimezone(JST).strftime("%Y-%m-%d %H:%M JST")


def _data_date(context: Mapping[str, Any]) -> str | None:
    try:
        return run_day(
            context.get("logical_date"), context.get("data_interval_start"), context.get("dag_run")
        ).isoformat()
    except Exception:
        return None


def alert_context(context: Mapping[str, Any], *, redact: list[Secret] | None = None) -> AlertContext:
    """Build the alert from an Airflow task context (pure: reads only ``context``)."""
    ti = context["ti"]
    dag_run = context.get("dag_run")
    logical = context.get("logical_date") or getattr(dag_run, "logical_date", None)
    interval_start = context.get("data_interval_start") or getattr(dag_run, "data_interval_start", None)
    run_after = getattr(dag_run, "run_after", None)
    # Runs without a logical date (Airflow 3 allows them) are identified by when they ran.
    shown = logical or interval_start or run_after
    exc = context.get("exception")
    # A failed quality gate's message is the list of failing expectations: the alert carries all of it.
    limits = (
        {"max_lines": GATE_ALERT_LINES, "max_chars": GATE_ALERT_CHARS}
        if isinstance(exc, QualityGateStop)
        else {}
    )
    head = error_head(
        exc if exc is not None else "no exception in the failure context", redact=redact or [], **limits
    )
    return AlertContext(
        dag_id=ti.dag_id,
        task_id=ti.task_id,
        logical_date_jst=_fmt_jst(shown),
        try_number=int(ti.try_number or 0),
        log_url=str(getattr(ti, "log_url", "") or ""),
        error_head=head,
        data_date=_data_date(context),
        run_id=context.get("run_id") or getattr(dag_run, "run_id", None),
    )


def on_task_failure(context: Mapping[str, Any]) -> None:
    """``on_failure_callback``: send (or, without Slack configured, log) an alert through the Slack
    provider's client (:class:`~gogooku3_airflow.hooks.SlackAlertsHook`). Never raises."""
    try:
        from gogooku3_airflow.hooks import SlackAlertsHook, resolve_settings, resolve_slack, secret_values

        try:
            slack = resolve_slack()
        except Exception as exc:  # a malformed slack_alerts connection must not hide the task's error
            log.warning("Slack settings unusable (%s: %s); the alert is only logged", type(exc).__name__, exc)
            slack = SlackSettings()
        redact: list[Secret] = [slack.token] if slack.token else []
        try:
            redact += secret_values(resolve_settings())
        except Exception:
            pass  # the configuration may be exactly what failed; Slack's own token is still redacted
        client = SlackAlertsHook(settings=slack).client if slack.configured else None
        send_alert(alert_context(context, redact=redact), slack, client=client, logger=log)
    except Exception as exc:
        log.warning(
            "Slack alert failed (%s: %s); the task's own error is unaffected", type(exc).__name__, exc
        )
