"""A local stand-in for Slack's Web API that records what it is sent.

Enough of the Web API for ``slack_sdk.WebClient(base_url=...)``: ``POST /api/chat.postMessage``
(JSON or form body) answers ``{"ok": true, "channel": ..., "ts": ..., "message": ...}`` like Slack,
and every request to ``/api/<method>`` is captured. Captures are kept in memory and, when an
output file is given, rewritten atomically as a JSON list after each request, so another process
(a test, the demo) can read them.

Like Slack, the server refuses a request without a bearer token (``not_authed``) and, when
``expected_token`` is set, one with another token (``invalid_auth``). The token itself is never
stored: a capture records only whether authentication passed.

Use it in tests::

    with running_slack_capture() as cap:
        settings = SlackSettings(token=Secret("xoxb-test"), base_url=cap.base_url)
        ...
        assert cap.messages()[0]["body"]["channel"] == "#alerts"

or as a process (demo, ``make dag-test``; ``--port 0`` binds a free port and ``--port-file`` tells
which, see :mod:`gogooku3.devtools.ports`)::

    python -m gogooku3.devtools.slack_capture --port 8766 --out .run/slack.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from gogooku3.devtools.ports import write_port_file

_CHANNEL_ID = "C0GOGOOKU3"


@dataclass
class CaptureStore:
    """Captured requests, in arrival order; optionally mirrored to ``out`` as a JSON list."""

    out: Path | None = None
    _items: list[dict[str, Any]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, item: dict[str, Any]) -> None:
        with self._lock:
            self._items.append(item)
            if self.out is not None:
                _write_json_atomic(self.out, self._items)

    def all(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(i) for i in self._items]


def _write_json_atomic(path: Path, value: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(value, fh, ensure_ascii=False, indent=1)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_captures(path: str | Path) -> list[dict[str, Any]]:
    """The captures a server process wrote to ``path`` (empty when nothing arrived yet)."""
    p = Path(path)
    if not p.exists():
        return []
    return json.loads(p.read_text(encoding="utf-8"))


def _parse_body(content_type: str, raw: bytes) -> dict[str, Any]:
    text = raw.decode("utf-8", errors="replace")
    if "application/json" in content_type:
        value = json.loads(text) if text.strip() else {}
        if not isinstance(value, dict):
            raise ValueError("JSON body is not an object")
        return value
    body: dict[str, Any] = dict(parse_qsl(text, keep_blank_values=True))
    # Form-encoded Block Kit arrives as a JSON string; decode it so captures look the same.
    for key in ("blocks", "attachments", "metadata"):
        if isinstance(body.get(key), str):
            try:
                body[key] = json.loads(body[key])
            except ValueError:
                pass
    return body


def _make_handler(store: CaptureStore, expected_token: str | None) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "gogooku3-slack-capture/1"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
            return  # quiet: tests and the demo read captures, not access logs

        def _answer(self, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802 - stdlib naming
            if self.path.rstrip("/") in ("", "/health"):
                self._answer(200, {"ok": True, "captured": len(store.all())})
            else:
                self._answer(404, {"ok": False, "error": "unknown_method"})

        def do_POST(self) -> None:  # noqa: N802 - stdlib naming
            if not self.path.startswith("/api/"):
                self._answer(404, {"ok": False, "error": "unknown_method"})
                return
            method = self.path[len("/api/") :].split("?", 1)[0]
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = _parse_body(self.headers.get("Content-Type", ""), raw)
            except ValueError:
                self._answer(200, {"ok": False, "error": "invalid_json"})
                return
            auth = self.headers.get("Authorization", "")
            token = auth[len("Bearer ") :] if auth.startswith("Bearer ") else ""
            if not token:
                error: str | None = "not_authed"
            elif expected_token is not None and token != expected_token:
                error = "invalid_auth"
            else:
                error = None
            store.add(
                {
                    "method": method,
                    "body": body,
                    "auth_ok": error is None,
                    "received_at": time.time(),
                }
            )
            if error:
                self._answer(200, {"ok": False, "error": error})
                return
            if method != "chat.postMessage":
                self._answer(200, {"ok": False, "error": "unknown_method"})
                return
            ts = f"{time.time():.6f}"
            self._answer(
                200,
                {
                    "ok": True,
                    "channel": _CHANNEL_ID,
                    "ts": ts,
                    "message": {
                        "type": "message",
                        "text": body.get("text", ""),
                        "blocks": body.get("blocks", []),
                        "ts": ts,
                    },
                },
            )

    return Handler


@dataclass
class SlackCapture:
    """A running capture server: where to point slack-sdk and what it received."""

    host: str
    port: int
    store: CaptureStore

    @property
    def base_url(self) -> str:
        """The value for ``WebClient(base_url=...)`` / ``GOGOOKU3_SLACK_BASE_URL``."""
        return f"http://{self.host}:{self.port}/api/"

    def requests(self) -> list[dict[str, Any]]:
        """Every captured request (any method, accepted or refused)."""
        return self.store.all()

    def messages(self) -> list[dict[str, Any]]:
        """Accepted ``chat.postMessage`` requests."""
        return [r for r in self.store.all() if r["method"] == "chat.postMessage" and r["auth_ok"]]


def _serve(host: str, port: int, store: CaptureStore, expected_token: str | None) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer((host, port), _make_handler(store, expected_token))
    server.daemon_threads = True
    return server


@contextmanager
def running_slack_capture(
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    out: str | Path | None = None,
    expected_token: str | None = None,
) -> Iterator[SlackCapture]:
    """Run a capture server in a background thread (port 0 picks a free port); stop it on exit."""
    store = CaptureStore(out=Path(out) if out else None)
    server = _serve(host, port, store, expected_token)
    # A short poll interval so leaving the context (tests) does not wait half a second.
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="slack-capture", daemon=True
    )
    thread.start()
    try:
        yield SlackCapture(host=host, port=server.server_address[1], store=store)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Local Slack Web API capture server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8766, help="0 picks a free port")
    parser.add_argument("--port-file", help="write the port bound here (atomically) once listening")
    parser.add_argument("--out", required=True, help="JSON file the captured requests are written to")
    parser.add_argument("--expected-token", default=None, help="refuse other tokens (invalid_auth)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    store = CaptureStore(out=out)
    _write_json_atomic(out, [])  # an empty list from the start: readers never see a missing file
    try:
        server = _serve(args.host, args.port, store, args.expected_token)
    except (OSError, OverflowError) as e:  # OverflowError: a port outside 0..65535
        print(f"slack capture: cannot listen on {args.host}:{args.port}: {e}", file=sys.stderr)
        return 1
    host, port = server.server_address[:2]
    # The socket listens from here on (the constructor bound it): report the port that it got.
    if args.port_file:
        write_port_file(args.port_file, port)
    print(f"slack capture listening on http://{host}:{port}/api/ writing {out}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
