"""The emulator's per-credential sliding-window rate limit.

Rule (precise): with ``limit`` requests per minute, ``interval = 60 / limit`` and
``window = 60 - interval / 2`` seconds, a request arriving at time ``t`` is accepted iff fewer
than ``limit`` requests of the same credential were accepted in ``(t - window, t]``. Refused
requests do not count. A client that spaces its requests exactly ``interval`` apart has
``limit - 1`` accepted requests in that window (the one ``limit`` requests back arrived 60 s
earlier, outside it), so it is never refused, even when each request arrives up to ``interval / 2`` later than that
exact schedule (network/event-loop jitter); a burst gets at most ``limit`` requests per
``window``, i.e. at most ``limit * 60 / window`` per minute (0.1% over for Premium).
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable


class SlidingWindowLimiter:
    def __init__(self, limit_per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        if limit_per_minute < 1:
            raise ValueError(f"limit_per_minute={limit_per_minute} must be >= 1")
        self.limit = limit_per_minute
        self.interval = 60.0 / limit_per_minute
        self.window = 60.0 - self.interval / 2.0
        self._clock = clock
        self._accepted: dict[str, deque[float]] = {}

    def check(self, credential: str) -> float | None:
        """Accept (record, return None) or refuse: seconds until a slot frees up."""
        now = self._clock()
        q = self._accepted.setdefault(credential, deque())
        while q and q[0] <= now - self.window:
            q.popleft()
        if len(q) >= self.limit:
            return max(q[0] + self.window - now, 0.0)
        q.append(now)
        return None

    def reset(self) -> None:
        self._accepted.clear()


def retry_after_header(wait_s: float) -> str:
    """Whole seconds (at least 1) for the Retry-After header."""
    return str(max(1, math.ceil(wait_s)))
