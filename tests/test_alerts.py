"""Slack alerts: the message's fields, delivery to a real HTTP capture server through slack-sdk,
logging instead of sending without a token, and never raising when Slack cannot be reached."""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from gogooku3.alerts import AlertContext, error_head, format_alert, send_alert
from gogooku3.config import Secret, SlackSettings
from gogooku3.devtools.ports import wait_for_port_file
from gogooku3.devtools.slack_capture import read_captures, running_slack_capture

CTX = AlertContext(
    dag_id="jquants_daily",
    task_id="daily_quotes",
    logical_date_jst="2024-06-14 00:00 JST",
    try_number=3,
    log_url="http://127.0.0.1:8080/dags/jquants_daily/runs/r1/tasks/daily_quotes?try_number=3",
    error_head="RequestFailedError: 503 from /equities/bars/daily\nsecond line",
    data_date="2024-06-14",
    run_id="scheduled__2024-06-14T10:00:00+00:00",
)
TOKEN = "xoxb-test-token-123456"


def _all_text(text: str, blocks: list[dict]) -> str:
    return text + "\n" + json.dumps(blocks, ensure_ascii=False)


def test_format_alert_carries_every_field() -> None:
    text, blocks = format_alert(CTX)
    everything = _all_text(text, blocks)
    for value in (CTX.dag_id, CTX.task_id, CTX.logical_date_jst, CTX.log_url, CTX.data_date, CTX.run_id):
        assert value in everything
    assert "RequestFailedError: 503 from /equities/bars/daily" in everything
    assert "*Try*\\n3" in json.dumps(blocks)
    assert "jquants_daily.daily_quotes" in text and "try 3" in text
    assert blocks[0]["type"] == "header"


def test_format_alert_keeps_the_error_inside_its_code_block() -> None:
    ctx = AlertContext("d", "t", "2024-06-14 00:00 JST", 1, "http://x", "boom ``` not code")
    _, blocks = format_alert(ctx)
    error_text = blocks[2]["text"]["text"]
    assert error_text.count("```") == 2


def test_error_head_takes_the_first_lines_and_chars() -> None:
    exc = ValueError("\n".join(f"line {i}" for i in range(20)))
    head = error_head(exc)
    assert head.startswith("ValueError: line 0")
    assert "line 4" in head and "line 5" not in head
    assert head.endswith("…")
    long = error_head("x" * 5000)
    assert len(long) <= 1002 and long.endswith("…")
    assert error_head("short") == "short"


def test_error_head_redacts_secrets() -> None:
    key = Secret("sk-live-abcdef123456")
    exc = RuntimeError(f"401 for key sk-live-abcdef123456 and password hunter2-pass at {'x' * 30}")
    head = error_head(exc, redact=[key, "hunter2-pass", ""])
    assert "sk-live-abcdef123456" not in head and "hunter2-pass" not in head
    assert head.count("***") == 2


def test_send_alert_reaches_the_capture_server_over_http() -> None:
    with running_slack_capture(expected_token=TOKEN) as cap:
        slack = SlackSettings(token=Secret(TOKEN), channel="#alerts", base_url=cap.base_url)
        assert send_alert(CTX, slack, logger=logging.getLogger("t")) is True
        msgs = cap.messages()
    assert len(msgs) == 1
    body = msgs[0]["body"]
    assert body["channel"] == "#alerts"
    sent = _all_text(body["text"], body["blocks"])
    for value in (CTX.dag_id, CTX.task_id, CTX.logical_date_jst, CTX.log_url, "RequestFailedError"):
        assert value in sent
    assert TOKEN not in json.dumps(msgs), "the capture must not store the token"


def test_base_url_without_trailing_slash_works() -> None:
    with running_slack_capture() as cap:
        slack = SlackSettings(token=Secret(TOKEN), base_url=cap.base_url.rstrip("/"))
        assert send_alert(CTX, slack) is True
        assert len(cap.messages()) == 1


def test_no_token_logs_the_alert_instead(caplog: pytest.LogCaptureFixture) -> None:
    with running_slack_capture() as cap:
        slack = SlackSettings(token=Secret(""), base_url=cap.base_url)
        with caplog.at_level(logging.WARNING, logger="t"):
            assert send_alert(CTX, slack, logger=logging.getLogger("t")) is False
        assert cap.requests() == []  # nothing was sent
    logged = caplog.text
    assert "SLACK ALERT (not sent: no Slack token configured)" in logged
    assert CTX.dag_id in logged and CTX.task_id in logged and CTX.log_url in logged
    assert "RequestFailedError" in logged


def test_refused_token_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    with running_slack_capture(expected_token="xoxb-the-right-one") as cap:
        slack = SlackSettings(token=Secret(TOKEN), base_url=cap.base_url)
        with caplog.at_level(logging.WARNING, logger="t"):
            assert send_alert(CTX, slack, logger=logging.getLogger("t")) is False
        assert [r["auth_ok"] for r in cap.requests()] == [False]
    assert "could not be sent" in caplog.text and "invalid_auth" in caplog.text
    assert TOKEN not in caplog.text


def test_unreachable_slack_never_raises(caplog: pytest.LogCaptureFixture) -> None:
    # A port bound but not listening refuses connections, and stays ours (nothing else can start
    # listening there) until the socket is closed at the end of the test.
    with socket.socket() as unreachable:
        unreachable.bind(("127.0.0.1", 0))
        port = unreachable.getsockname()[1]
        slack = SlackSettings(token=Secret(TOKEN), base_url=f"http://127.0.0.1:{port}/api/")
        with caplog.at_level(logging.WARNING, logger="t"):
            assert send_alert(CTX, slack, logger=logging.getLogger("t")) is False
    assert "could not be sent" in caplog.text
    assert CTX.task_id in caplog.text  # the alert itself is still in the log
    assert TOKEN not in caplog.text


def test_a_broken_context_never_raises(caplog: pytest.LogCaptureFixture) -> None:
    broken = AlertContext("d", "t", "x", 1, "http://x", None)  # type: ignore[arg-type]
    with caplog.at_level(logging.WARNING, logger="t"):
        assert send_alert(broken, SlackSettings(token=Secret(TOKEN)), logger=logging.getLogger("t")) is False
    assert "could not be formatted" in caplog.text


def test_capture_refuses_a_request_without_token() -> None:
    with running_slack_capture() as cap:
        req = urllib.request.Request(
            cap.base_url + "chat.postMessage",
            data=json.dumps({"channel": "#c", "text": "hi"}).encode(),
            headers={"Content-Type": "application/json"},
        )
        answer = json.loads(urllib.request.urlopen(req, timeout=5).read())
        assert answer == {"ok": False, "error": "not_authed"}
        assert cap.messages() == []


def test_capture_cli_writes_the_out_file(tmp_path) -> None:
    out, port_file = tmp_path / "slack.json", tmp_path / "slack.port"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gogooku3.devtools.slack_capture",
            "--port",
            "0",
            "--port-file",
            str(port_file),
            "--out",
            str(out),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # port 0: the server binds a free port itself and reports it, in the file and on stdout
        port = wait_for_port_file(port_file, proc, timeout_s=30)
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith(f"slack capture listening on http://127.0.0.1:{port}/api/")
        assert read_captures(out) == []
        slack = SlackSettings(token=Secret(TOKEN), channel="#ops", base_url=f"http://127.0.0.1:{port}/api/")
        assert send_alert(CTX, slack) is True
        deadline = time.monotonic() + 10
        while not read_captures(out) and time.monotonic() < deadline:
            time.sleep(0.05)
        captured = read_captures(out)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert [c["body"]["channel"] for c in captured] == ["#ops"]
    assert CTX.log_url in json.dumps(captured)


def test_capture_cli_reports_a_busy_port(tmp_path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))  # held for the whole test: no race
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "gogooku3.devtools.slack_capture", "--port", str(port)]
            + ["--port-file", str(tmp_path / "port"), "--out", str(tmp_path / "slack.json")],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert f"slack capture: cannot listen on 127.0.0.1:{port}" in done.stderr
    assert not (tmp_path / "port").exists()


def test_a_notice_reaches_slack_and_is_logged_without_a_token(caplog) -> None:
    from gogooku3.alerts import send_notice

    with running_slack_capture(expected_token=TOKEN) as slack:
        settings = SlackSettings(token=Secret(TOKEN), channel="#models", base_url=slack.base_url)
        assert send_notice(
            "m v2 promoted to champion", ["decision: beats champion", "MLflow: http://x"], settings
        )
        (message,) = slack.messages()
    assert message["body"]["channel"] == "#models"
    assert message["body"]["text"] == "m v2 promoted to champion\ndecision: beats champion\nMLflow: http://x"
    assert "*m v2 promoted to champion*" in json.dumps(message["body"]["blocks"])
    with caplog.at_level(logging.WARNING):
        assert not send_notice("m v3 not promoted", ["why"], SlackSettings())
    assert (
        "SLACK NOTICE (not sent: no Slack token configured)" in caplog.text
        and "m v3 not promoted" in caplog.text
    )
