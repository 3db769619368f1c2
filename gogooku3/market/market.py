"""The :class:`Market` facade: ground-truth frames in the canonical lake schema."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import cached_property, lru_cache

import numpy as np
import polars as pl

from gogooku3.calendar import following_exchange, rule_is_trading_day
from gogooku3.jquants.datasets import DATASETS, MARKET_CODES, get_dataset
from gogooku3.market.generator import (
    COEF_FOREIGN_FLOW,
    COEF_REVERSAL,
    COEF_ROE,
    COEF_VOLUME_SHOCK,
    ROE_CENTER,
    MarketConfig,
    Simulation,
    exchange_days,
    simulate,
)
from gogooku3.market.reference import MARGIN_CODE_NAMES, RESTRUCTURE_DATE, SECTOR_17_NAMES, SECTOR_33


@dataclass(frozen=True)
class SignalColumn:
    """One planted predictor: its column in :meth:`Market.planted`, coefficient and meaning."""

    name: str
    coefficient: float
    description: str


SIGNAL_COLUMNS: tuple[SignalColumn, ...] = (
    SignalColumn(
        "reversal_5d",
        COEF_REVERSAL,
        "ln(AdjustmentClose_t / AdjustmentClose_{t-5}) over the last 5 trading days (closes "
        "carried forward over no-trade days; 0 until listed 5 days); enters clipped to [-0.5, 0.5]",
    ),
    SignalColumn(
        "volume_shock",
        COEF_VOLUME_SHOCK,
        "clip(ln(AdjustmentVolume_t / mean(AdjustmentVolume_{t-19..t})), -3, 3) (0 until listed "
        "20 days or when the mean is 0; a no-trade day gives -3)",
    ),
    SignalColumn(
        "foreign_flow",
        COEF_FOREIGN_FLOW,
        "ForeignersBalance / ForeignersTotal of the stock's trades_spec Section, from the record "
        "with PublishedDate <= t and the latest EndDate (a revision wins a tie); 0 before any",
    ),
    SignalColumn(
        "roe",
        COEF_ROE,
        "Profit * 4 / quarters elapsed / Equity of the latest full statement known at the close of "
        "t (DisclosedTime < 15:00:00 on DisclosedDate <= t, else the next trading day); enters as "
        f"clip(roe - {ROE_CENTER}, -0.3, 0.3), 0 when none (null in the column)",
    ),
)


#: Days the market's calendar reaches beyond its last day (J-Quants' reaches to the next year's end).
CALENDAR_AHEAD_DAYS = 366

#: Datasets computed from the simulation after the fact (:mod:`gogooku3.market.derived`).
DERIVED_DATASETS = (
    "indices",
    "short_selling",
    "weekly_margin_interest",
    "earnings_calendar",
    "dividends",
    "futures",
    "index_option",
    "daily_margin_interest",
    "short_selling_positions",
)


class Market:
    """A generated market and its ground truth, per dataset and date, in the canonical schema."""

    def __init__(self, cfg: MarketConfig, sim: Simulation) -> None:
        self.config = cfg
        self._sim = sim
        self._day_arr = np.array(sim.days, dtype="datetime64[D]")
        self._day_pos = {d: k for k, d in enumerate(sim.days)}
        self._code_pos = {c: k for k, c in enumerate(sim.codes.tolist())}
        self.signal_columns: tuple[SignalColumn, ...] = SIGNAL_COLUMNS

    # ---- basic facts
    @property
    def trading_days(self) -> tuple[dt.date, ...]:
        return self._sim.days

    @property
    def codes(self) -> tuple[str, ...]:
        """Every code that is listed at some point, sorted."""
        return tuple(self._sim.codes.tolist())

    @property
    def start(self) -> dt.date:
        return self.config.start

    @property
    def end(self) -> dt.date:
        return self.config.end

    def listing_span(self, code: str) -> tuple[dt.date, dt.date | None]:
        """(first listed trading day, first day no longer listed or None)."""
        i = self._code_index(code)
        s = self._sim
        delist = s.days[s.delist_idx[i]] if s.delist_idx[i] < len(s.days) else None
        return s.days[s.list_idx[i]], delist

    def _code_index(self, code: str) -> int:
        try:
            return self._code_pos[code]
        except KeyError:
            raise KeyError(f"unknown code {code!r}") from None

    # ---- frames
    def frame(self, dataset_name: str, day: dt.date) -> pl.DataFrame:
        """Ground truth of ``dataset_name`` for its partition date ``day`` (canonical schema).

        listed_info: the issues listed on ``day`` (any calendar day within [start, end]);
        daily_quotes/topix/indices/short_selling: that trading day's rows; statements: disclosed
        that day; trades_spec and earnings_calendar: published that day; dividends: announced that day; weekly_margin_interest:
        the balances recorded that day (a week's last trading day); trading_calendar: the day's
        HolidayDivision.
        """
        if dataset_name == "trading_calendar":
            return self.trading_calendar(day, day)
        ds = get_dataset(dataset_name)
        if ds.name == "listed_info":
            return self.listed_info(day)
        if ds.name == "daily_quotes":
            t = self._day_pos.get(day)
            if t is None:
                return _empty("daily_quotes")
            i = np.nonzero(self._sim.listed(t))[0]
            return self._quotes(np.full(len(i), t), i)
        if ds.name == "statements":
            return self.statements(start=day, end=day)
        if ds.name == "trades_spec":
            return self.trades_spec(start=day, end=day)
        if ds.name in DERIVED_DATASETS:
            return self.derived(ds.name, start=day, end=day)
        return self.topix(day, day)

    def listed_info(self, day: dt.date, code: str | None = None) -> pl.DataFrame:
        """Issues listed on calendar day ``day`` (empty outside [start, end])."""
        s = self._sim
        if day < self.start or day > self.end:
            return _empty("listed_info")
        k = int(np.searchsorted(self._day_arr, np.datetime64(day), side="right"))
        mask = (s.list_idx < k) & (s.delist_idx >= k)
        if code is not None:
            mask &= s.codes == code
        i = np.nonzero(mask)[0]
        mk = s.market_from[i] if day >= RESTRUCTURE_DATE else s.market_before[i]
        sec33 = [SECTOR_33[j] for j in s.sector[i]]
        code4 = [c[:4] for c in s.codes[i]]
        df = pl.DataFrame(
            {
                "Date": [day] * len(i),
                "Code": s.codes[i],
                "CompanyName": [f"シンセティック{c}" for c in code4],
                "CompanyNameEnglish": [f"SYNTHETIC {c} CO.,LTD." for c in code4],
                "Sector17Code": [x[3] for x in sec33],
                "Sector17CodeName": [SECTOR_17_NAMES[x[3]] for x in sec33],
                "Sector33Code": [x[0] for x in sec33],
                "Sector33CodeName": [x[1] for x in sec33],
                "ScaleCategory": s.scale[i],
                "MarketCode": mk,
                "MarketCodeName": [MARKET_CODES[m] for m in mk],
                "MarginCode": s.margin[i],
                "MarginCodeName": [MARGIN_CODE_NAMES[m] for m in s.margin[i]],
            },
            schema=DATASETS["listed_info"].schema,
        )
        return df

    def daily_quotes(
        self, code: str, start: dt.date | None = None, end: dt.date | None = None
    ) -> pl.DataFrame:
        """One code's bars over [start, end] (only days it was listed), sorted by Date."""
        i = self._code_index(code)
        s = self._sim
        lo = int(np.searchsorted(self._day_arr, np.datetime64(start or self.start), side="left"))
        hi = int(np.searchsorted(self._day_arr, np.datetime64(end or self.end), side="right"))
        lo, hi = max(lo, int(s.list_idx[i])), min(hi, int(s.delist_idx[i]))
        t = np.arange(lo, hi) if hi > lo else np.arange(0)
        return self._quotes(t, np.full(len(t), i))

    def daily_panel(self) -> pl.DataFrame:
        """Every daily_quotes row of the market, sorted by (Date, Code)."""
        s = self._sim
        T = len(s.days)
        rows = np.arange(T)[:, None]
        t, i = np.nonzero((rows >= s.list_idx[None, :]) & (rows < s.delist_idx[None, :]))
        return self._quotes(t, i)

    def _quotes(self, t: np.ndarray, i: np.ndarray) -> pl.DataFrame:
        s = self._sim
        mult = s.adj_mult[t, i]
        ohlc = {k: getattr(s, k.lower())[t, i].astype(np.float64) for k in ("Open", "High", "Low", "Close")}
        vol = s.volume[t, i]
        data = {
            "Date": self._day_arr[t],
            "Code": s.codes[i],
            **ohlc,
            "UpperLimit": s.upper[t, i],
            "LowerLimit": s.lower[t, i],
            "Volume": vol,
            "TurnoverValue": s.turnover[t, i],
            "AdjustmentFactor": s.factor[t, i],
            **{f"Adjustment{k}": np.round(v * mult, 6) for k, v in ohlc.items()},
            "AdjustmentVolume": np.round(vol / mult, 6),
        }
        df = pl.DataFrame(data, nan_to_null=True)
        return df.select([pl.col(f.name).cast(f.dtype) for f in DATASETS["daily_quotes"].fields])

    def statements(
        self, start: dt.date | None = None, end: dt.date | None = None, code: str | None = None
    ) -> pl.DataFrame:
        """Statements disclosed in [start, end] (optionally one code), in DisclosureNumber order."""
        df = self._sim.statements
        if start is not None:
            df = df.filter(pl.col("DisclosedDate") >= start)
        if end is not None:
            df = df.filter(pl.col("DisclosedDate") <= end)
        if code is not None:
            df = df.filter(pl.col("Code") == code)
        return df

    def trades_spec(
        self, start: dt.date | None = None, end: dt.date | None = None, section: str | None = None
    ) -> pl.DataFrame:
        """trades_spec records published in [start, end], sorted by (PublishedDate, Section, StartDate)."""
        df = self._sim.trades_spec
        if start is not None:
            df = df.filter(pl.col("PublishedDate") >= start)
        if end is not None:
            df = df.filter(pl.col("PublishedDate") <= end)
        if section is not None:
            df = df.filter(pl.col("Section") == section)
        return df

    @cached_property
    def _topix(self) -> pl.DataFrame:
        tp = self._sim.topix
        return pl.DataFrame(
            {"Date": self._day_arr, "Open": tp[:, 0], "High": tp[:, 1], "Low": tp[:, 2], "Close": tp[:, 3]}
        ).select([pl.col(f.name).cast(f.dtype) for f in DATASETS["topix"].fields])

    def topix(self, start: dt.date | None = None, end: dt.date | None = None) -> pl.DataFrame:
        df = self._topix
        if start is not None:
            df = df.filter(pl.col("Date") >= start)
        if end is not None:
            df = df.filter(pl.col("Date") <= end)
        return df

    def trading_calendar(
        self, start: dt.date | None = None, end: dt.date | None = None, division: str | None = None
    ) -> pl.DataFrame:
        """Every calendar day in [start, end] with its HolidayDivision ("1" open, "0" closed) on this
        market's exchange: the rule, except the config's closures. Without bounds: the market's first
        day through :data:`CALENDAR_AHEAD_DAYS` after its last (the exchange publishes ahead)."""
        start = start or self.start
        end = end or self.end + dt.timedelta(days=CALENDAR_AHEAD_DAYS)
        closed = set(self.config.closures)
        n = (end - start).days + 1
        dates = [start + dt.timedelta(days=k) for k in range(max(n, 0))]
        division_of = ["1" if d not in closed and rule_is_trading_day(d) else "0" for d in dates]
        df = pl.DataFrame(
            {"Date": dates, "HolidayDivision": division_of},
            schema=DATASETS["trading_calendar"].schema,
        )
        return df if division is None else df.filter(pl.col("HolidayDivision") == division)

    # ---- datasets derived from the simulation (gogooku3.market.derived)
    @cached_property
    def _derived(self) -> dict[str, pl.DataFrame]:
        from gogooku3.market import derivatives, derived

        sim, seed = self._sim, self.config.seed
        indices = derived.sector_indices(sim)
        return {
            "indices": indices,
            "short_selling": derived.short_selling(sim, seed, indices),
            "weekly_margin_interest": derived.weekly_margin_interest(sim, seed),
            "earnings_calendar": derived.earnings_calendar(sim, seed),
            "dividends": derived.dividends(sim, seed),
            "futures": derivatives.futures(sim, seed),
            "index_option": derivatives.index_option(sim, seed),
            "daily_margin_interest": derived.daily_margin_interest(sim, seed),
            "short_selling_positions": derived.short_selling_positions(sim, seed),
        }

    def derived(
        self,
        name: str,
        start: dt.date | None = None,
        end: dt.date | None = None,
        *,
        code: str | None = None,
        sector: str | None = None,
    ) -> pl.DataFrame:
        """Rows of a derived dataset (:data:`DERIVED_DATASETS`) whose partition date is in
        [start, end], optionally of one ``code`` or ``sector`` (Sector33Code), in key order."""
        ds = get_dataset(name)
        if name not in DERIVED_DATASETS:
            raise ValueError(
                f"{name!r} is not a derived dataset: expected one of {', '.join(DERIVED_DATASETS)}"
            )
        df = self._derived[name]
        on = pl.col(ds.partition_by)
        if start is not None:
            df = df.filter(on >= start)
        if end is not None:
            df = df.filter(on <= end)
        if code is not None:
            df = df.filter(pl.col("Code") == code)
        if sector is not None:
            df = df.filter(pl.col("Sector33Code") == sector)
        return df

    # ---- ground truth of the planted signal
    def planted(self, day: dt.date | None = None) -> pl.DataFrame:
        """Planted predictors and ``planted_alpha`` per listed (Date, Code).

        ``planted_alpha`` on Date t is the planted expected log return from the close of t to the
        close of the next trading day (on top of beta * market + sector factor), computed only from
        data known at the close of t: ``signal * sum(coefficient * term)`` over
        :data:`SIGNAL_COLUMNS`.
        """
        s = self._sim
        T = len(s.days)
        if day is not None:
            t0 = self._day_pos.get(day)
            if t0 is None:
                return self._planted(np.arange(0), np.arange(0))
            i = np.nonzero(s.listed(t0))[0]
            return self._planted(np.full(len(i), t0), i)
        rows = np.arange(T)[:, None]
        t, i = np.nonzero((rows >= s.list_idx[None, :]) & (rows < s.delist_idx[None, :]))
        return self._planted(t, i)

    def expected_return(self, day: dt.date | None = None) -> pl.DataFrame:
        """(Date, Code, ExpectedReturn): the planted alpha, see :meth:`planted`."""
        return self.planted(day).select("Date", "Code", pl.col("planted_alpha").alias("ExpectedReturn"))

    def _planted(self, t: np.ndarray, i: np.ndarray) -> pl.DataFrame:
        s = self._sim
        return pl.DataFrame(
            {
                "Date": self._day_arr[t],
                "Code": s.codes[i],
                "reversal_5d": s.reversal[t, i].astype(np.float64),
                "volume_shock": s.volume_shock[t, i].astype(np.float64),
                "foreign_flow": s.foreign_flow[t, i].astype(np.float64),
                "roe": s.roe[t, i].astype(np.float64),
                "planted_alpha": s.alpha[t, i].astype(np.float64),
            },
            nan_to_null=True,
        ).with_columns(pl.col("Date").cast(pl.Date))


def _empty(name: str) -> pl.DataFrame:
    return pl.DataFrame(schema=DATASETS[name].schema)


@lru_cache(maxsize=4)
def generate_market(cfg: MarketConfig = MarketConfig()) -> Market:  # noqa: B008 - frozen, hashable
    """Generate (once per config, cached) the synthetic market for ``cfg``, on its own calendar: with
    ``cfg.closures`` the prices and every derived dataset are generated while the process follows
    that exchange (so the derived datasets are computed here, not on first use)."""
    if not cfg.closures:
        return Market(cfg, simulate(cfg))
    with following_exchange(exchange_days(cfg)):
        market = Market(cfg, simulate(cfg))
        market.derived("indices")  # computes every derived dataset
    return market
