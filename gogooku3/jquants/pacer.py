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
a local emulator - pace independently. Workers on different hosts do not share a temp dir; point
``GOGOOKU3_PACER_DIR`` at a shared filesystem with working ``flock`` for multi-host backfills, or
give each host its own share of the rate with ``JQUANTS_RATE_PER_MINUTE``.

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


class RatePacer:
    """Paces sends to ``rate_per_minute * safety`` across coroutines and processes.

    ``key`` identifies the account (use :func:`fingerprint`); ``state_dir=None`` uses
    :func:`default_pacer_dir`. A rate <= 0 or infinite disables pacing. ``clock`` (wall-clock
    seconds, shared meaning across processes) and ``sleep`` are injectable for tests.
    """

    def __init__(
        self,
        rate_per_minute: float,
        *,
        key: str,
        state_dir: str | Path | None = None,
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
        self._local_next = 0.0
        #: lateness after which a slot is forfeited (see :meth:`acquire`); well inside the ~0.6 s
        #: of slack DEFAULT_SAFETY leaves, and above ordinary event-loop jitter
        self.late_s = late_s
        self.max_forfeits = max_forfeits
        #: slots given up because the caller woke too late (observable in tests and benchmarks)
        self.forfeited = 0
        self.path: Path | None = None
        if self.enabled:
            directory = Path(state_dir) if state_dir else default_pacer_dir()
            try:
                directory.mkdir(parents=True, exist_ok=True)
                self.path = directory / f"{key}.slot"
                reserve_slot(self.path, 0.0, 0.0)  # touch: fail here, not mid-run
            except OSError as exc:
                # Without the shared file we still pace this process; other processes may then
                # overlap and earn 429s, which the client retries. Say so loudly.
                log.warning("pacer state dir %s unusable (%s); pacing this process only", directory, exc)
                self.path = None

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
                slot = self._reserve(now)
            # Sleep outside the lock: later callers reserve later slots meanwhile, so up to
            # `concurrency` requests can be waiting for consecutive slots.
            delay = slot - now
            if delay > 0:
                await self._sleep(delay)
                waited += delay
            late = self._clock() - slot
            if late <= self.late_s or attempt == self.max_forfeits:
                break
            self.forfeited += 1
            log.debug("pacer: woke %.3fs after the slot; taking a new one", late)
        return waited

    def _reserve(self, now: float) -> float:
        if self.path is not None:
            return reserve_slot(self.path, self.interval_s, now)
        slot = max(now, self._local_next)
        self._local_next = slot + self.interval_s
        return slot
