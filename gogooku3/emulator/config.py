"""Configuration of the J-Quants emulator."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from gogooku3.calendar import JST
from gogooku3.market import ConfigFieldError, MarketConfig

#: Requests per minute per credential of each J-Quants plan.
PLAN_LIMITS: dict[str, int] = {"free": 5, "light": 60, "standard": 120, "premium": 500}

#: Fault kinds the emulator can inject. ``token_expiry`` applies to v1 only.
FAULT_KINDS: tuple[str, ...] = ("429", "5xx", "drop", "malformed", "token_expiry")

DEFAULT_API_KEY = "emulator-api-key"
DEFAULT_EMAIL = "quant@example.com"
DEFAULT_PASSWORD = "emulator-password"


@dataclass(frozen=True)
class EmulatorConfig:
    """Everything the emulator serves and how it misbehaves. Credentials never appear in repr."""

    market: MarketConfig = field(default_factory=MarketConfig)
    plan: str = "premium"
    #: Override of the plan's requests per minute (None: the plan's limit).
    rate_per_minute: int | None = None
    page_size: int = 1000
    #: Delay added to every request, seconds.
    latency_s: float = 0.0
    #: Probability that a data request gets an injected fault.
    fault_rate: float = 0.0
    faults: tuple[str, ...] = FAULT_KINDS
    #: Seed of the fault draws (with the request itself, so runs are reproducible).
    fault_seed: int = 7
    #: At most this many faults in a row for the same request; the next attempt is served.
    max_consecutive_faults: int = 3
    #: Retry-After (seconds) sent with injected 429 faults.
    fault_retry_after_s: int = 1
    api_key: str = field(default=DEFAULT_API_KEY, repr=False)
    email: str = field(default=DEFAULT_EMAIL, repr=False)
    password: str = field(default=DEFAULT_PASSWORD, repr=False)
    id_token_ttl_s: float = 24 * 3600.0
    refresh_token_ttl_s: float = 7 * 24 * 3600.0

    def __post_init__(self) -> None:
        def bad(field: str, problem: str) -> ConfigFieldError:
            return ConfigFieldError("EmulatorConfig", field, getattr(self, field), problem)

        # Floats are checked with math.isfinite first: NaN passes every < / > comparison.
        if self.plan not in PLAN_LIMITS:
            raise bad("plan", f"must be one of {', '.join(PLAN_LIMITS)}")
        if self.rate_per_minute is not None and self.rate_per_minute < 1:
            raise bad("rate_per_minute", "must be >= 1")
        if self.page_size < 1:
            raise bad("page_size", "must be >= 1")
        if not math.isfinite(self.latency_s) or self.latency_s < 0:
            raise bad("latency_s", "must be a finite number >= 0")
        if not (math.isfinite(self.fault_rate) and 0.0 <= self.fault_rate <= 1.0):
            raise bad("fault_rate", "must be a number in [0, 1]")
        unknown = [k for k in self.faults if k not in FAULT_KINDS]
        if unknown:
            raise bad(
                "faults",
                f"has unknown kind(s) {', '.join(map(repr, unknown))}; known: {', '.join(FAULT_KINDS)}",
            )
        if self.max_consecutive_faults < 0:
            raise bad("max_consecutive_faults", "must be >= 0")
        if self.fault_retry_after_s < 0:
            raise bad("fault_retry_after_s", "must be >= 0")
        for ttl in ("id_token_ttl_s", "refresh_token_ttl_s"):
            value = getattr(self, ttl)
            if not math.isfinite(value) or value <= 0:
                raise bad(ttl, "must be a finite number > 0")

    @property
    def limit_per_minute(self) -> int:
        return self.rate_per_minute or PLAN_LIMITS[self.plan]

    def with_(self, **changes: object) -> EmulatorConfig:
        return replace(self, **changes)

    @classmethod
    def build(
        cls,
        seed: int = 7,
        codes: int = 4000,
        start: dt.date = dt.date(2019, 1, 1),
        end: dt.date | None = None,
        plan: str = "premium",
        signal: float = 1.0,
        page_size: int = 1000,
        latency_s: float = 0.0,
        fault_rate: float = 0.0,
        faults: Iterable[str] = FAULT_KINDS,
        today: dt.date | None = None,
        closures: Iterable[dt.date] = (),
        **overrides: object,
    ) -> EmulatorConfig:
        """Config from CLI-style arguments; ``end=None`` means ``today``, which defaults to the JST date
        now (a parameter so that tests do not depend on the day they run)."""
        if end is None:
            end = today if today is not None else dt.datetime.now(JST).date()
        market = MarketConfig(
            seed=seed, n_codes=codes, start=start, end=end, signal=signal, closures=tuple(closures)
        )
        fields: dict[str, object] = {"fault_seed": seed, **overrides}
        return cls(
            market=market,
            plan=plan,
            page_size=page_size,
            latency_s=latency_s,
            fault_rate=fault_rate,
            faults=tuple(faults),
            **fields,  # type: ignore[arg-type]
        )
