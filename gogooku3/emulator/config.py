"""Configuration of the J-Quants emulator."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from gogooku3.calendar import JST
from gogooku3.market import MarketConfig

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
        if self.plan not in PLAN_LIMITS:
            raise ValueError(f"EmulatorConfig.plan={self.plan!r} must be one of {', '.join(PLAN_LIMITS)}")
        if self.rate_per_minute is not None and self.rate_per_minute < 1:
            raise ValueError(f"EmulatorConfig.rate_per_minute={self.rate_per_minute} must be >= 1")
        if self.page_size < 1:
            raise ValueError(f"EmulatorConfig.page_size={self.page_size} must be >= 1")
        if self.latency_s < 0:
            raise ValueError(f"EmulatorConfig.latency_s={self.latency_s} must be >= 0")
        if not 0.0 <= self.fault_rate <= 1.0:
            raise ValueError(f"EmulatorConfig.fault_rate={self.fault_rate} must be in [0, 1]")
        bad = [k for k in self.faults if k not in FAULT_KINDS]
        if bad:
            raise ValueError(
                f"EmulatorConfig.faults: unknown kind(s) {bad}; expected {', '.join(FAULT_KINDS)}"
            )
        if self.max_consecutive_faults < 0:
            raise ValueError("EmulatorConfig.max_consecutive_faults must be >= 0")
        if self.id_token_ttl_s <= 0 or self.refresh_token_ttl_s <= 0:
            raise ValueError("EmulatorConfig token lifetimes must be > 0")

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
        **overrides: object,
    ) -> EmulatorConfig:
        """Config from CLI-style arguments; ``end=None`` means today (JST)."""
        end = end or dt.datetime.now(JST).date()
        market = MarketConfig(seed=seed, n_codes=codes, start=start, end=end, signal=signal)
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
