"""Slack alerts for failed pipeline tasks, and information notices (a promotion decision).

A pure library (no Airflow imports): the Airflow glue builds an :class:`AlertContext` from a task's
failure context and calls :func:`send_alert`. Three rules shape it:

* **An alert never masks the task's own error.** :func:`send_alert` catches everything that can go
  wrong while sending (bad token, Slack down, a refused connection, a malformed answer) and logs it;
  it never raises.
* **No Slack configured is not an error.** Without a token the alert is written to the log, clearly
  marked, so a developer machine or CI still shows what would have been sent.
* **No secrets.** The token lives in :class:`gogooku3.config.Secret` and is never logged; the error
  text is cut to its first lines and scrubbed of any secret value the caller passes in
  (:func:`error_head`), because exception messages sometimes echo credentials.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from gogooku3.config import Secret, SlackSettings
from gogooku3.redaction import scrub

#: How much of the error an alert carries: the head is enough to triage, the log has the rest.
ERROR_HEAD_LINES = 5
ERROR_HEAD_CHARS = 1000
#: Seconds to wait for Slack; an alert must not hold a failing task's worker for long.
SLACK_TIMEOUT_S = 10


class _Logger(Protocol):
    def info(self, msg: str, *args: Any) -> Any: ...
    def warning(self, msg: str, *args: Any) -> Any: ...


@dataclass(frozen=True)
class AlertContext:
    """What an on-call engineer needs to triage a failed task, and nothing secret.

    ``logical_date_jst`` is the run's logical date rendered in JST (e.g. ``2024-06-14 00:00 JST``);
    ``data_date`` (optional) is the JST trading day the run was processing, when the caller knows it.
    """

    dag_id: str
    task_id: str
    logical_date_jst: str
    try_number: int
    log_url: str
    error_head: str
    data_date: str | None = None
    run_id: str | None = None


def error_head(
    error: BaseException | str,
    *,
    redact: Iterable[str | Secret] = (),
    max_lines: int = ERROR_HEAD_LINES,
    max_chars: int = ERROR_HEAD_CHARS,
) -> str:
    """The first ``max_lines`` lines (at most ``max_chars`` characters) of an error, secrets removed.

    An exception is rendered as ``TypeName: message``. The text is scrubbed
    (:func:`gogooku3.redaction.scrub`: every secret this process holds, and every value in
    ``redact``, plain strings or :class:`Secret`) before it is cut, so a secret cannot survive
    half-truncated.
    """
    if isinstance(error, BaseException):
        message = str(error)
        text = f"{type(error).__name__}: {message}" if message else type(error).__name__
    else:
        text = str(error)
    text = scrub(text, extra=[s.get() if isinstance(s, Secret) else str(s) for s in redact])
    lines = text.strip().splitlines()
    head = "\n".join(lines[:max_lines])
    truncated = len(lines) > max_lines
    if len(head) > max_chars:
        head = head[:max_chars]
        truncated = True
    return head + ("\n…" if truncated else "")


def format_alert(ctx: AlertContext) -> tuple[str, list[dict[str, Any]]]:
    """The alert as Slack message ``text`` (fallback/notification line) and Block Kit ``blocks``."""
    text = (
        f":red_circle: Task failed: {ctx.dag_id}.{ctx.task_id} "
        f"(logical date {ctx.logical_date_jst}, try {ctx.try_number})"
    )
    fields = [
        {"type": "mrkdwn", "text": f"*DAG*\n`{ctx.dag_id}`"},
        {"type": "mrkdwn", "text": f"*Task*\n`{ctx.task_id}`"},
        {"type": "mrkdwn", "text": f"*Logical date (JST)*\n{ctx.logical_date_jst}"},
        {"type": "mrkdwn", "text": f"*Try*\n{ctx.try_number}"},
    ]
    if ctx.data_date:
        fields.append({"type": "mrkdwn", "text": f"*Data date (JST)*\n{ctx.data_date}"})
    if ctx.run_id:
        fields.append({"type": "mrkdwn", "text": f"*Run*\n`{ctx.run_id}`"})
    # Triple backticks inside the error would close the code block early.
    error = ctx.error_head.replace("```", "'''") or "(no error message)"
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": "Task failed", "emoji": True}},
        {"type": "section", "fields": fields},
        {"type": "section", "text": {"type": "mrkdwn", "text": f"*Error*\n```{error}```"}},
        {"type": "section", "text": {"type": "mrkdwn", "text": f"<{ctx.log_url}|View log>"}},
    ]
    return text, blocks


def _as_log_lines(text: str, blocks: list[dict[str, Any]]) -> str:
    error = blocks[2]["text"]["text"] if len(blocks) > 2 else ""
    return f"{text}\n{error}\nlog: {blocks[-1]['text']['text']}"


def send_alert(
    ctx: AlertContext,
    slack: SlackSettings,
    *,
    client: Any = None,
    logger: _Logger | None = None,
) -> bool:
    """Post the alert to Slack; return True when Slack accepted it. Never raises.

    ``client`` is a ``slack_sdk.WebClient`` (in Airflow: the Slack provider's, from
    ``SlackAlertsHook``); without one, a client is built from ``slack``. Without a token
    (``slack.configured`` false) the alert is logged as a warning, prefixed ``SLACK ALERT (not sent: no
    Slack token configured)``, and False is returned. Any failure to send is logged (without the
    token) and False is returned.
    """
    log = logger or logging.getLogger(__name__)
    try:
        text, blocks = format_alert(ctx)
    except Exception as exc:  # a bug here must still not mask the task's error
        log.warning("SLACK ALERT could not be formatted (%s: %s)", type(exc).__name__, exc)
        return False
    return post_message(text, blocks, slack, client=client, logger=log, kind="SLACK ALERT")


def send_notice(
    title: str,
    lines: Iterable[str],
    slack: SlackSettings,
    *,
    client: Any = None,
    logger: _Logger | None = None,
) -> bool:
    """Post an information message (not an alert: nothing failed), e.g. a promotion decision: a
    bold title and its lines. Same rules as :func:`send_alert`: never raises, logged when no Slack
    token is configured."""
    body = "\n".join(lines)
    text = f"{title}\n{body}" if body else title
    blocks: list[dict[str, Any]] = [{"type": "section", "text": {"type": "mrkdwn", "text": f"*{title}*"}}]
    if body:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": body[:2900]}})
    return post_message(text, blocks, slack, client=client, logger=logger, kind="SLACK NOTICE")


def post_message(
    text: str,
    blocks: list[dict[str, Any]],
    slack: SlackSettings,
    *,
    client: Any = None,
    logger: _Logger | None = None,
    kind: str = "SLACK MESSAGE",
) -> bool:
    """``chat.postMessage`` of ``text``/``blocks`` to ``slack.channel``; True when Slack accepted it.
    Never raises; ``kind`` prefixes what is logged."""
    log = logger or logging.getLogger(__name__)
    if not slack.configured:
        log.warning(
            "%s (not sent: no Slack token configured) to %s:\n%s",
            kind,
            slack.channel,
            _as_log_lines(text, blocks),
        )
        return False
    try:
        if client is None:
            from slack_sdk import WebClient

            base_url = slack.base_url or WebClient.BASE_URL
            client = WebClient(
                token=slack.token.get(),
                # slack_sdk joins method names onto base_url, which therefore must end with "/".
                base_url=base_url if base_url.endswith("/") else base_url + "/",
                timeout=SLACK_TIMEOUT_S,
            )
        response = client.chat_postMessage(channel=slack.channel, text=text, blocks=blocks)
    except Exception as exc:
        # SlackApiError, URLError, timeouts...: their messages carry the answer or the URL, never
        # the token (sent only in the Authorization header).
        log.warning(
            "%s could not be sent to %s (%s: %s); the message was:\n%s",
            kind,
            slack.channel,
            type(exc).__name__,
            error_head(exc, redact=[slack.token], max_lines=3, max_chars=500),
            _as_log_lines(text, blocks),
        )
        return False
    log.info("%s sent to %s (ts=%s)", kind, response.get("channel", slack.channel), response.get("ts"))
    return True
