"""Run the emulator in-process for tests and benchmarks: ``with running_emulator(cfg) as emu:``.

The server listens on 127.0.0.1 on a free port, in a background thread with its own event
loop, so synchronous and asynchronous test code (and other processes, via ``/_stats``) can use it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from gogooku3.emulator.config import EmulatorConfig
from gogooku3.emulator.server import _State, app_state, create_app
from gogooku3.market import Market, MarketConfig, generate_market


def small_config(
    codes: int = 60,
    start: dt.date = dt.date(2024, 1, 1),
    end: dt.date = dt.date(2024, 3, 31),
    seed: int = 7,
    **overrides: Any,
) -> EmulatorConfig:
    """A fast config for tests (a small market); ``overrides`` are EmulatorConfig fields, besides the
    market's ``signal`` and ``closures``."""
    signal = overrides.pop("signal", 1.0)
    closures = tuple(overrides.pop("closures", ()))
    market = MarketConfig(seed=seed, n_codes=codes, start=start, end=end, signal=signal, closures=closures)
    return EmulatorConfig(market=market, fault_seed=seed, **overrides)


@dataclass
class EmulatorHandle:
    """A running emulator: URLs, credentials, ground truth and request statistics."""

    config: EmulatorConfig
    market: Market
    host: str
    port: int
    _state: _State
    _loop: asyncio.AbstractEventLoop

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url_v1(self) -> str:
        return f"{self.base_url}/v1"

    @property
    def base_url_v2(self) -> str:
        return f"{self.base_url}/v2"

    @property
    def api_key(self) -> str:
        return self.config.api_key

    @property
    def email(self) -> str:
        return self.config.email

    @property
    def password(self) -> str:
        return self.config.password

    @property
    def stats(self) -> dict[str, Any]:
        """Snapshot: see :meth:`gogooku3.emulator.server.Stats.snapshot`."""
        return self._state.stats.snapshot()

    def _call(self, fn) -> None:
        done = threading.Event()

        def run() -> None:
            try:
                fn()
            finally:
                done.set()

        self._loop.call_soon_threadsafe(run)
        done.wait(10)

    def reset_stats(self, rate_limits: bool = False) -> None:
        """Zero the counters (and, with ``rate_limits``, forget past requests of the limiter)."""
        self._state.stats.reset()
        if rate_limits:
            self._call(self._state.limiter.reset)

    def expire_id_tokens(self) -> None:
        """Make every issued v1 id token expired now (the next data request gets 401)."""
        self._call(self._state.id_tokens.clear)

    def set_faults(self, fault_rate: float, faults: tuple[str, ...] | None = None) -> None:
        """Change fault injection of the running server."""
        cfg = self._state.cfg.with_(fault_rate=fault_rate, faults=faults or self._state.cfg.faults)

        def swap() -> None:
            self._state.cfg = cfg

        self._call(swap)
        self.config = cfg


@contextmanager
def running_emulator(cfg: EmulatorConfig | None = None) -> Iterator[EmulatorHandle]:
    """Serve ``cfg`` (default :func:`small_config`) on 127.0.0.1:<free port> until the block ends."""
    cfg = cfg or small_config()
    market = generate_market(cfg.market)
    app = create_app(cfg, market)
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    started = threading.Event()
    info: dict[str, Any] = {}

    def serve() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(runner.setup())
            site = web.TCPSite(runner, "127.0.0.1", 0)
            loop.run_until_complete(site.start())
            info["port"] = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        except BaseException as exc:  # surfaced to the caller below
            info["error"] = exc
            started.set()
            return
        started.set()
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())
        loop.close()

    thread = threading.Thread(target=serve, name="jquants-emulator", daemon=True)
    thread.start()
    if not started.wait(30):
        raise RuntimeError("emulator did not start within 30 s")
    if "error" in info:
        raise RuntimeError(f"emulator failed to start: {info['error']!r}")
    handle = EmulatorHandle(cfg, market, "127.0.0.1", info["port"], app_state(app), loop)
    try:
        yield handle
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
