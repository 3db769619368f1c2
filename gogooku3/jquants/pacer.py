"""Client-side request pacing that holds across coroutines *and* processes.

Why a pacer
-----------
J-Quants' real ceiling is the plan's requests per minute (Free 5, Light 60, Standard 120,
Premium 500), enforced over a sliding 60-second window with HTTP 429. Concurrency limits (the
client's semaphore, an Airflow pool) cap how many requests are *in flight*, not how many are
*sent per minute*: eight slots with 200 ms answers is 40 requests/s, far over any plan. So rate
is capped separately, here.

Design: one shared slot schedule
--------------------------------
Every request takes the next free *slot* on a schedule of evenly spaced send times, ``interval =
60 / (rate * safety)`` seconds apart. The schedule's only state is ``next_free`` (a wall-clock
timestamp) kept in a small state file under ``pacer_dir`` (default ``$TMPDIR/gogooku3-pacer``):

1. take an exclusive ``fcntl.flock`` on the file (held for microseconds, never across an await);
2. ``slot = max(now, next_free)``; write ``next_free = slot + interval``; unlock;
3. sleep until ``slot``, then send.

Because every sender - each coroutine of each client in each process on the host (parallel Airflow
task processes of a backfill on one worker, the CLI, a notebook) - reserves from the same file,
consecutive sends are at least ``interval`` apart globally, so any 60 s window holds at most
``floor(60 / interval) + 1`` of them. An idle gap simply lets ``now`` overtake ``next_free``: there
is no burst credit to spend, which is exactly what a sliding-window server wants. In front of the
file sits an :class:`asyncio.Lock` so coroutines of one process reserve in order without
contending on the file lock.

The file is keyed by the API base URL plus a *fingerprint* of the credential (a SHA-256 prefix,
never the credential itself): limits are per account, so two accounts - or the production API and
a local emulator - pace independently.

Several worker hosts: Redis
---------------------------
Workers on different hosts share no temp dir. With ``GOGOOKU3_PACER_URL=redis://host:6379/N`` (or
the ``jquants`` connection's ``pacer_url``; the deployment points it at the Celery broker's Redis)
the schedule lives in Redis instead, under ``gogooku3:pacer:<fingerprint>``, and one Lua script
does step 2 atomically on the server. The script reads the *server's* clock (``TIME``) and returns
the delay until the slot rather than the slot itself, so the hosts' clocks never have to agree:
each sleeps the delay it was given. Should Redis stop answering mid-run, the request is paced by
this process alone (a warning says so; the client retries any 429 that earns) and the next request
asks Redis again. At start-up a malformed pacer URL is a configuration error (no retry can fix it);
a Redis that does not answer is :class:`PacerUnavailableError`, an ordinary error a task retries (a
busy host can miss the first ping: the deploy test saw it on a cold stack).

Safety margin: the server (J-Quants, and the emulator, whose rule is documented in
:mod:`gogooku3.emulator.ratelimit`: a request is refused when ``limit`` requests were already
accepted in the last ``60 - interval/2`` seconds) tolerates only ``interval/2`` of arrival
jitter at exactly 100% of the plan - 60 ms at Premium. A request can leave later than its slot
(the event loop busy decoding a 1,000-row page, an id-token refresh just before it), and a late
request followed 60 s later by an on-time one is the limit+1-th in the window. :data:`DEFAULT_SAFETY`
= 0.99 spaces slots 60/495 s apart at Premium, so requests 500 slots apart are 60.6 s apart and
up to ~0.6 s of lateness is harmless, for 1% of throughput.
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import math
import os
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit, urlunsplit

from gogooku3.config import ConfigError
from gogooku3.redaction import library_logger

log = library_logger(__name__)

#: Fraction of the plan's rate the schedule targets (see the module docstring for why not 1.0).
DEFAULT_SAFETY = 0.99


def default_pacer_dir() -> Path:
    return Path(tempfile.gettempdir()) / "gogooku3-pacer"


def fingerprint(*parts: str) -> str:
    """A short, non-reversible id for a credential/URL combination (safe to put in a file name)."""
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode("utf-8"))
        h.update(b"\0")
    return h.hexdigest()[:24]


def reserve_slot(path: Path | str, interval_s: float, now: float) -> float:
    """Atomically reserve the next send slot in the shared state file; returns the slot time.

    ``slot = max(now, next_free)`` and ``next_free`` advances by ``interval_s``. The exclusive
    ``flock`` makes the read-modify-write atomic across processes.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            raw = os.pread(fd, 64, 0)
            try:
                next_free = float(raw.decode("ascii").strip() or 0.0)
            except (UnicodeDecodeError, ValueError):
                next_free = 0.0  # a corrupt file only costs us one un-paced slot
            if not math.isfinite(next_free):
                next_free = 0.0
            slot = max(now, next_free)
            data = f"{slot + interval_s:.6f}".ljust(32).encode("ascii")
            os.pwrite(fd, data, 0)
            return slot
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


class PacerError(ConfigError):
    """The configured shared schedule cannot be used: its URL is malformed."""


class PacerUnavailableError(RuntimeError):
    """The configured shared schedule's Redis does not answer (transient: retried, not a config error)."""


class SlotSchedule(Protocol):
    """Where the slot schedule lives. :meth:`reserve` takes the next free slot ``interval_s`` after
    the previous one and returns the seconds from now until it (``>= 0``)."""

    def reserve(self, interval_s: float, now: float) -> float: ...


class LocalSchedule:
    """This process only."""

    def __init__(self) -> None:
        self.next_free = 0.0

    def reserve(self, interval_s: float, now: float) -> float:
        slot = max(now, self.next_free)
        self.next_free = slot + interval_s
        return slot - now


class FileSchedule:
    """Every process of one host (or of a filesystem with working ``flock``): :func:`reserve_slot`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        reserve_slot(path, 0.0, 0.0)  # touch: an unusable directory fails here, not mid-run

    def reserve(self, interval_s: float, now: float) -> float:
        return reserve_slot(self.path, interval_s, now) - now


#: Step 2 of the module docstring on the Redis server, with the server's clock: returns the delay
#: until the reserved slot as a string (a Lua number would come back truncated to an integer). The
#: key expires a minute after its last slot: an idle schedule holds nothing worth keeping.
RESERVE_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local next_free = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
local slot = math.max(now, next_free)
local after = slot + tonumber(ARGV[1])
redis.call('SET', KEYS[1], string.format('%.6f', after), 'PX', math.floor((after - now) * 1000) + 60000)
return string.format('%.6f', slot - now)
"""


def redacted_url(url: str) -> str:
    """``url`` without its password (for messages): ``redis://:***@host:6379/1``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


class RedisSchedule:
    """Every process of every host that reaches one Redis server (see the module docstring)."""

    def __init__(self, url: str, key: str, *, timeout_s: float = 5.0) -> None:
        import redis

        self.url = url
        self.key = f"gogooku3:pacer:{key}"
        where = redacted_url(url)
        try:
            self._client = redis.Redis.from_url(
                url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
            )
            self._script = self._client.register_script(RESERVE_LUA)
        except ValueError as exc:
            raise PacerError(f"pacer Redis URL {where} is malformed: {exc}") from None
        try:
            self._client.ping()
        except redis.RedisError as exc:
            raise PacerUnavailableError(f"pacer Redis {where} does not answer: {exc}") from None
        self._errors = redis.RedisError
        self._fallback = LocalSchedule()
        self._failing = False

    def reserve(self, interval_s: float, now: float) -> float:
        try:
            delay = float(self._script(keys=[self.key], args=[f"{interval_s:.6f}"]))
        except self._errors as exc:
            if not self._failing:
                log.warning(
                    "pacer Redis %s failed (%s); pacing this process only until it answers again",
                    redacted_url(self.url),
                    exc,
                )
            self._failing = True
            return self._fallback.reserve(interval_s, now)
        if self._failing:
            log.warning("pacer Redis %s answers again", redacted_url(self.url))
            self._failing = False
        return max(0.0, delay)


class RatePacer:
    """Paces sends to ``rate_per_minute * safety`` across coroutines and processes.

    ``key`` identifies the account (use :func:`fingerprint`). The schedule is shared through
    ``redis_url`` when given (every host; :class:`PacerUnavailableError` if it does not answer), else through a
    file in ``state_dir`` (this host; ``None`` uses :func:`default_pacer_dir`). A rate <= 0 or
    infinite disables pacing. ``clock`` (wall-clock seconds) and ``sleep`` are injectable for tests.
    """

    def __init__(
        self,
        rate_per_minute: float,
        *,
        key: str,
        state_dir: str | Path | None = None,
        redis_url: str | None = None,
        safety: float = DEFAULT_SAFETY,
        late_s: float = 0.25,
        max_forfeits: int = 3,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if not 0 < safety <= 1:
            raise ValueError(f"pacer safety={safety} must be in (0, 1]")
        if math.isnan(rate_per_minute):
            # NaN fails every comparison, so the check below would quietly switch pacing off.
            raise ValueError("pacer rate_per_minute is NaN; give a rate, or inf to disable pacing")
        self.rate_per_minute = rate_per_minute
        self.enabled = 0 < rate_per_minute < math.inf
        self.interval_s = 60.0 / (rate_per_minute * safety) if self.enabled else 0.0
        self._clock, self._sleep = clock, sleep
        self._lock: asyncio.Lock | None = None
        #: lateness after which a slot is forfeited (see :meth:`acquire`); well inside the ~0.6 s
        #: of slack DEFAULT_SAFETY leaves, and above ordinary event-loop jitter
        self.late_s = late_s
        self.max_forfeits = max_forfeits
        #: slots given up because the caller woke too late (observable in tests and benchmarks)
        self.forfeited = 0
        self.schedule: SlotSchedule = LocalSchedule()
        if self.enabled and redis_url:
            self.schedule = RedisSchedule(redis_url, key)
        elif self.enabled:
            directory = Path(state_dir) if state_dir else default_pacer_dir()
            try:
                directory.mkdir(parents=True, exist_ok=True)
                self.schedule = FileSchedule(directory / f"{key}.slot")
            except OSError as exc:
                # Without the shared file we still pace this process; other processes may then
                # overlap and earn 429s, which the client retries. Say so loudly.
                log.warning("pacer state dir %s unusable (%s); pacing this process only", directory, exc)

    async def acquire(self) -> float:
        """Wait for this caller's send slot; returns the seconds waited.

        A caller that wakes up more than :attr:`late_s` after its slot (the event loop or the
        process stalled) forfeits it and takes a fresh one, at most :attr:`max_forfeits` times:
        otherwise every request whose slot fell inside the stall would leave at once, and such a
        bunch is exactly what overfills a sliding window 60 s later.
        """
        if not self.enabled:
            return 0.0
        if self._lock is None:
            self._lock = asyncio.Lock()
        waited = 0.0
        for attempt in range(self.max_forfeits + 1):
            async with self._lock:
                now = self._clock()
                delay = self.schedule.reserve(self.interval_s, now)
            # Sleep outside the lock: later callers reserve later slots meanwhile, so up to
            # `concurrency` requests can be waiting for consecutive slots.
            slot = now + delay
            if delay > 0:
                await self._sleep(delay)
                waited += delay
            late = self._clock() - slot
            if late <= self.late_s or attempt == self.max_forfeits:
                break
            self.forfeited += 1
            log.debug("pacer: woke %.3fs after the slot; taking a new one", late)
        return waited
