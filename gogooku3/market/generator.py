"""The synthetic market: universe, factor-model prices with a planted signal, TOPIX.

See :mod:`gogooku3.market` for the model and the exact planted-signal formulas.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import polars as pl

from gogooku3.calendar import rule_is_trading_day, trading_days
from gogooku3.market.flows import ALL_SECTIONS, SECTION_INDEX, foreign_flow_by_section, generate_trades_spec
from gogooku3.market.fundamentals import CLOSE_TIME, Universe, generate_statements, published_roe
from gogooku3.market.reference import (
    MARKETS_BEFORE,
    MARKETS_FROM,
    RESTRUCTURE_DATE,
    SECTION_OF_MARKET,
    SECTOR_33,
    price_limit_width,
)

# Planted-signal coefficients (multiplied by MarketConfig.signal); documented in the package doc.
COEF_REVERSAL = -0.04
COEF_VOLUME_SHOCK = 0.0015
COEF_FOREIGN_FLOW = 0.05
COEF_ROE = 0.01
ROE_CENTER = 0.08
REVERSAL_WINDOW = 5
VOLUME_WINDOW = 20

TOPIX_BASE = 1700.0
_FAR_FUTURE = np.datetime64("2262-01-01", "D")


class ConfigFieldError(ValueError):
    """A config field with a value it cannot take. ``str()`` reads ``Owner.field=value problem``;
    the parts stay available so that a front end (the ``gogooku3 emulator`` command) can name the
    option the value came from instead of the field."""

    def __init__(self, owner: str, field: str, value: object, problem: str) -> None:
        self.owner, self.field, self.value, self.problem = owner, field, value, problem
        super().__init__(f"{owner}.{field}={value!r} {problem}")


@dataclass(frozen=True)
class MarketConfig:
    """What determines a synthetic market. Equal configs give identical markets."""

    seed: int = 7
    n_codes: int = 4000
    start: dt.date = dt.date(2019, 1, 1)
    end: dt.date = dt.date(2024, 12, 31)
    #: Strength of the planted signal; 0.0 makes returns pure factor noise.
    signal: float = 1.0
    #: Days the exchange stays closed although the rule (gogooku3.calendar) calls them trading days,
    #: like the TSE's 2020-10-01 system failure: no bars that day, HolidayDivision "0" in the
    #: market's calendar, and everything else generated on the market's own calendar.
    closures: tuple[dt.date, ...] = ()

    def __post_init__(self) -> None:
        def bad(field: str, problem: str) -> ConfigFieldError:
            return ConfigFieldError("MarketConfig", field, getattr(self, field), problem)

        if self.seed < 0:  # numpy's SeedSequence takes non-negative integers only
            raise bad("seed", "must be >= 0")
        if not 1 <= self.n_codes <= 8000:  # distinct 4-digit codes are drawn from 1301..9998
            raise bad("n_codes", "must be in 1..8000")
        if self.start > self.end:
            raise bad("start", f"must not be after end ({self.end})")
        if not trading_days(self.start, self.end):
            raise bad("start", f"leaves no JPX trading day through end ({self.end})")
        if not all(isinstance(d, dt.date) and rule_is_trading_day(d) for d in self.closures):
            raise bad("closures", "must be dates the rule calls trading days (a closure beyond the rule)")
        # NaN passes every comparison; a NaN or infinite signal turns most simulated prices into NaN.
        if not math.isfinite(self.signal) or self.signal < 0:
            raise bad("signal", "must be a finite number >= 0")


@dataclass
class Simulation:
    """Arrays of the simulated market, (T, N) unless noted; row t is trading day ``days[t]``."""

    days: tuple[dt.date, ...]
    codes: np.ndarray  # (N,) str
    list_idx: np.ndarray  # (N,) first listed day index
    delist_idx: np.ndarray  # (N,) first day index no longer listed (T = never)
    sector: np.ndarray  # (N,) index into SECTOR_33
    market_before: np.ndarray  # (N,) MarketCode before the restructuring ("" if listed after)
    market_from: np.ndarray  # (N,) MarketCode from the restructuring
    scale: np.ndarray  # (N,) ScaleCategory
    margin: np.ndarray  # (N,) MarginCode
    shares: np.ndarray  # (N,) shares outstanding, in units of the first day (before any split)
    restructure_idx: int  # first day index on or after RESTRUCTURE_DATE
    open: np.ndarray  # raw prices (float32, whole yen), NaN when not traded
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray  # raw shares (float64), 0 when not traded
    turnover: np.ndarray  # yen (float64)
    traded: np.ndarray  # bool
    upper: np.ndarray  # bool, High touched the upper price limit
    lower: np.ndarray  # bool
    factor: np.ndarray  # AdjustmentFactor on each day (1.0 except ex-dates), float64
    adj_mult: np.ndarray  # raw -> adjusted price multiplier (product of later factors), float64
    reversal: np.ndarray  # planted predictors, float32; see package docstring
    volume_shock: np.ndarray
    foreign_flow: np.ndarray
    roe: np.ndarray  # NaN before the first usable statement
    alpha: np.ndarray  # planted expected return from close t to close t+1
    topix: np.ndarray  # (T, 4) O/H/L/C
    statements: pl.DataFrame
    trades_spec: pl.DataFrame

    def listed(self, t: int) -> np.ndarray:
        return (self.list_idx <= t) & (t < self.delist_idx)


def _streams(seed: int, n: int) -> list[np.random.Generator]:
    """Independent RNG streams per component, so changing one part never shifts the others.
    Stream k depends on (seed, k) only: streams added after the first ``n`` leave those unchanged."""
    return [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(n)]


#: Streams 0-6 drive :func:`simulate`; the datasets derived from a simulation use these
#: (:mod:`gogooku3.market.derived`).
DERIVED_STREAMS = {
    "short_selling": 7,
    "weekly_margin_interest": 8,
    "earnings_calendar": 9,
    "dividends": 10,
    "futures": 11,
    "index_option": 12,
    "daily_margin_interest": 13,
    "short_selling_positions": 14,
}


def derived_stream(seed: int, dataset: str) -> np.random.Generator:
    """The RNG stream of a derived dataset (see :data:`DERIVED_STREAMS`)."""
    return _streams(seed, max(DERIVED_STREAMS.values()) + 1)[DERIVED_STREAMS[dataset]]


def simulate(cfg: MarketConfig) -> Simulation:
    """The market on its own calendar: called where :func:`exchange_days` is installed (see
    :func:`gogooku3.market.generate_market`)."""
    days = trading_days(cfg.start, cfg.end)
    T, N = len(days), cfg.n_codes
    r_uni, r_split, r_flow, r_fund, r_px, r_vol, r_fac = _streams(cfg.seed, 7)

    # ---- universe
    codes4 = np.sort(r_uni.choice(np.arange(1301, 9999), size=N, replace=False))
    codes = np.array([f"{c}0" for c in codes4])
    list_idx = np.zeros(N, dtype=np.int64)
    delist_idx = np.full(N, T, dtype=np.int64)
    if T > 40:
        new = r_uni.random(N) < 0.12
        list_idx[new] = r_uni.integers(1, T - 20, new.sum())
        gone = r_uni.random(N) < 0.06
        lo = list_idx[gone] + 20
        delist_idx[gone] = np.where(lo < T, r_uni.integers(np.minimum(lo, T - 1), T), T)
    sector = r_uni.integers(0, len(SECTOR_33), N)
    restructure_idx = int(
        np.searchsorted(np.array(days, dtype="datetime64[D]"), np.datetime64(RESTRUCTURE_DATE))
    )
    mk_before = r_uni.choice(np.array(MARKETS_BEFORE), size=N, p=[0.5, 0.12, 0.12, 0.22, 0.04])
    u = r_uni.random(N)
    mk_from = np.select(
        [
            mk_before == "0101",
            mk_before == "0102",
            mk_before == "0104",
            mk_before == "0106",
        ],
        [
            np.where(u < 0.85, "0111", "0112"),
            np.full(N, "0112"),
            np.where(u < 0.8, "0113", "0112"),
            np.where(u < 0.85, "0112", "0113"),
        ],
        default="0113",
    )
    fresh = list_idx >= restructure_idx  # listed after the restructuring: new codes only
    mk_from = np.where(fresh, r_uni.choice(np.array(MARKETS_FROM), size=N, p=[0.3, 0.35, 0.35]), mk_from)
    mk_before = np.where(fresh, "", mk_before)
    big = (mk_before == "0101") | (fresh & (mk_from == "0111"))
    cap0 = np.exp(r_uni.normal(np.log(3e10), 1.4, N)) * np.where(big, 3.0, 1.0)
    price0 = np.round(np.exp(r_uni.uniform(np.log(150), np.log(15000), N)))
    shares = np.round(cap0 / price0, -3) + 1000.0
    order = np.argsort(-np.where(big, cap0, -1.0))
    rank = np.empty(N, dtype=np.int64)
    rank[order] = np.arange(N)
    n_big = int(big.sum())
    scale = np.select(
        [~big, rank < 30, rank < 100, rank < 500, rank < 500 + (n_big - 500) // 2],
        ["-", "TOPIX Core30", "TOPIX Large70", "TOPIX Mid400", "TOPIX Small 1"],
        default="TOPIX Small 2",
    )
    margin = np.where(
        big, np.where(r_uni.random(N) < 0.9, "2", "1"), np.where(r_uni.random(N) < 0.9, "1", "3")
    )

    # ---- splits (ex-date index, factor); J-Quants: factor 0.5 = 1:2 split
    factor = np.ones((T, N))
    has_split = r_split.random(N) < 0.04
    for i in np.nonzero(has_split)[0]:
        span = delist_idx[i] - list_idx[i]
        if span < 10:
            continue
        for _ in range(1 + int(r_split.random() < 0.15)):
            t = int(r_split.integers(list_idx[i] + 5, delist_idx[i]))
            factor[t, i] = r_split.choice(
                [0.5, 0.2, 0.25, 0.1, 2.0, 5.0], p=[0.55, 0.15, 0.1, 0.05, 0.1, 0.05]
            )
    cum = np.cumprod(factor, axis=0)  # raw = economic * cum
    adj_mult = np.ones((T, N))
    if T > 1:
        adj_mult[:-1] = np.cumprod(factor[:0:-1], axis=0)[::-1]
    day_arr = np.array(days, dtype="datetime64[D]")

    def split_cum(idx: np.ndarray, dates: np.ndarray) -> np.ndarray:
        pos = np.searchsorted(day_arr, dates, side="right") - 1
        out = np.ones(len(idx))
        ok = pos >= 0
        out[ok] = cum[pos[ok], idx[ok]]
        return out

    # ---- trades_spec and statements
    trades_spec = generate_trades_spec(r_flow, days, cfg.end)
    flow_sec = foreign_flow_by_section(trades_spec, days)
    uni = Universe(
        codes=codes,
        list_date=day_arr[list_idx],
        delist_date=np.where(delist_idx < T, day_arr[np.minimum(delist_idx, T - 1)], _FAR_FUTURE),
        cap0=cap0,
        shares=shares,
    )
    statements = generate_statements(r_fund, uni, days, split_cum)
    roe_at = _roe_known(statements, codes, day_arr)
    sec_before = np.array([SECTION_INDEX[SECTION_OF_MARKET[m]] if m else 0 for m in mk_before])
    sec_from = np.array([SECTION_INDEX[SECTION_OF_MARKET[m]] for m in mk_from])

    # ---- prices
    beta = np.clip(r_px.normal(1.0, 0.3, N), 0.2, 2.0)
    sigma = np.clip(np.exp(r_px.normal(np.log(0.018), 0.35, N)) * (cap0 / 3e10) ** -0.08, 0.008, 0.06)
    mkt = r_fac.normal(0.0002, 0.011, T)
    sec_f = r_fac.normal(0.0, 0.006, (T, len(SECTOR_33)))
    no_trade_p = np.where(r_px.random(N) < 0.3, r_px.uniform(0.002, 0.03, N), 0.0)
    base_lv = np.log(cap0 * np.exp(r_vol.normal(np.log(0.004), 0.5, N)) / price0)

    f32 = np.float32
    open_a, high_a, low_a, close_a = (np.full((T, N), np.nan, dtype=f32) for _ in range(4))
    V = np.zeros((T, N))
    TV = np.zeros((T, N))
    traded_a = np.zeros((T, N), dtype=bool)
    up_a = np.zeros((T, N), dtype=bool)
    lo_a = np.zeros((T, N), dtype=bool)
    rev_a, vs_a, ff_a, alpha_a = (np.zeros((T, N), dtype=f32) for _ in range(4))
    topix = np.zeros((T, 4))

    x = price0.copy()  # economic (pre-split-unit) price = AdjustmentClose / adj_mult-constant
    x_hist = np.zeros((REVERSAL_WINDOW + 1, N))
    adjvol_hist = np.zeros((VOLUME_WINDOW, N))
    vol_state = np.zeros(N)
    alpha_prev = np.zeros(N)
    prev_raw = price0.copy()
    index_level = TOPIX_BASE
    for t in range(T):
        listed = (list_idx <= t) & (t < delist_idx)
        was_listed = (list_idx <= t - 1) & (t - 1 < delist_idx)
        f = factor[t]
        base = np.maximum(np.where(list_idx == t, price0 * cum[t], prev_raw * f), 1.0)
        z = r_px.standard_normal((4, N))
        jump = np.where(r_px.random(N) < 0.0015, np.sign(z[3]) * r_px.uniform(0.12, 0.35, N), 0.0)
        idio = sigma * z[0] + jump
        r = beta * mkt[t] + sec_f[t, sector] + alpha_prev + idio
        forced = (list_idx == t) | (f != 1.0)
        traded = listed & ((r_px.random(N) >= no_trade_p) | forced)
        width = price_limit_width(base)
        hi_lim = np.floor(base + width)
        lo_lim = np.maximum(np.ceil(base - width), 1.0)
        close = np.clip(np.rint(base * np.exp(r)), lo_lim, hi_lim)
        close = np.where(traded, close, base)
        opn = np.clip(np.rint(base * np.exp(0.3 * r + 0.3 * sigma * z[1])), lo_lim, hi_lim)
        high = np.clip(np.rint(np.maximum(opn, close) * np.exp(0.5 * sigma * np.abs(z[2]))), lo_lim, hi_lim)
        low = np.clip(np.rint(np.minimum(opn, close) * np.exp(-0.5 * sigma * np.abs(z[3]))), lo_lim, hi_lim)
        high = np.maximum(high, np.maximum(opn, close))
        low = np.minimum(low, np.minimum(opn, close))
        vol_state = 0.9 * vol_state + 0.436 * r_vol.standard_normal(N)
        spike = np.where(r_vol.random(N) < 0.03, r_vol.uniform(0.5, 1.5, N), 0.0)
        econ_vol = np.exp(base_lv + 0.5 * vol_state + 8.0 * np.abs(idio) + spike)
        raw_vol = np.where(traded, np.maximum(np.round(econ_vol / cum[t], -2), 100.0), 0.0)
        turnover = np.round(raw_vol * (opn + high + low + close) / 4.0)

        open_a[t] = np.where(traded, opn, np.nan)
        high_a[t] = np.where(traded, high, np.nan)
        low_a[t] = np.where(traded, low, np.nan)
        close_a[t] = np.where(traded, close, np.nan)
        V[t] = raw_vol
        TV[t] = np.where(traded, turnover, 0.0)
        traded_a[t] = traded
        up_a[t] = traded & (high >= hi_lim)
        lo_a[t] = traded & (low <= lo_lim)

        # TOPIX: chain-linked cap-weighted index over codes listed yesterday and today
        x_new = np.where(listed, close / cum[t], x)
        both = listed & was_listed
        if t == 0:
            both = listed
        w = np.where(both, shares * x, 0.0)
        if w.sum() > 0:
            ratios = np.stack([opn, high, low, close]) / base
            ratios = np.where(traded, ratios, 1.0)
            o_, h_, l_, c_ = (index_level * (w * ratios[k]).sum() / w.sum() for k in range(4))
            topix[t] = [o_, max(h_, o_, c_), min(l_, o_, c_), c_]
            index_level = c_
        else:
            topix[t] = index_level
        x = x_new
        prev_raw = np.where(listed, close, prev_raw)

        # planted predictors, known at the close of day t
        x_hist = np.roll(x_hist, -1, axis=0)
        x_hist[-1] = x
        adjvol = raw_vol / adj_mult[t]
        adjvol_hist = np.roll(adjvol_hist, -1, axis=0)
        adjvol_hist[-1] = adjvol
        age = t - list_idx  # days listed before today
        with np.errstate(divide="ignore", invalid="ignore"):
            rev = np.where(age >= REVERSAL_WINDOW, np.log(x / x_hist[0]), 0.0)
            mean_v = adjvol_hist.mean(axis=0)
            vs = np.where(
                (age >= VOLUME_WINDOW - 1) & (mean_v > 0),
                np.clip(np.log(adjvol / mean_v), -3.0, 3.0),
                0.0,
            )
        vs = np.nan_to_num(vs, nan=0.0, neginf=-3.0, posinf=3.0)
        sec = sec_before if t < restructure_idx else sec_from
        flow = flow_sec[t, sec]
        roe = roe_at[t]
        roe_term = np.where(np.isnan(roe), 0.0, np.clip(roe - ROE_CENTER, -0.3, 0.3))
        alpha = cfg.signal * (
            COEF_REVERSAL * np.clip(rev, -0.5, 0.5)
            + COEF_VOLUME_SHOCK * vs
            + COEF_FOREIGN_FLOW * flow
            + COEF_ROE * roe_term
        )
        alpha = np.where(listed, alpha, 0.0)
        rev_a[t], vs_a[t], ff_a[t], alpha_a[t] = rev, vs, flow, alpha
        alpha_prev = alpha

    return Simulation(
        days=days,
        codes=codes,
        list_idx=list_idx,
        delist_idx=delist_idx,
        sector=sector,
        market_before=mk_before,
        market_from=mk_from,
        scale=scale,
        margin=margin,
        shares=shares,
        restructure_idx=restructure_idx,
        open=open_a,
        high=high_a,
        low=low_a,
        close=close_a,
        volume=V,
        turnover=TV,
        traded=traded_a,
        upper=up_a,
        lower=lo_a,
        factor=factor,
        adj_mult=adj_mult,
        reversal=rev_a,
        volume_shock=vs_a,
        foreign_flow=ff_a,
        roe=roe_at.astype(np.float32),
        alpha=alpha_a,
        topix=np.round(topix, 2),
        statements=statements,
        trades_spec=trades_spec,
    )


def _roe_known(statements: pl.DataFrame, codes: np.ndarray, day_arr: np.ndarray) -> np.ndarray:
    """(T, N) published ROE of the latest statement known at each day's close (NaN before any).

    Known at the close of its DisclosedDate when DisclosedTime < 15:00:00, else at the close of
    the next trading day.
    """
    T, N = len(day_arr), len(codes)
    out = np.full((T, N), np.nan)
    roe = published_roe(statements)
    if roe.is_empty():
        return out
    code_pos = {c: k for k, c in enumerate(codes)}
    d = roe["DisclosedDate"].to_numpy().astype("datetime64[D]")
    t = np.searchsorted(day_arr, d) + (roe["DisclosedTime"].to_numpy() >= CLOSE_TIME).astype(np.int64)
    i = np.array([code_pos[c] for c in roe["Code"].to_list()])
    v = roe["ROE"].to_numpy()
    ok = t < T
    # later statements overwrite earlier ones known the same day (rows are in disclosure order)
    out[t[ok], i[ok]] = v[ok]
    mask = ~np.isnan(out)
    last = np.where(mask, np.arange(T)[:, None], 0)
    np.maximum.accumulate(last, axis=0, out=last)
    filled = out[last, np.arange(N)]
    return np.where(np.maximum.accumulate(mask, axis=0), filled, np.nan)


def exchange_days(cfg: MarketConfig) -> dict[dt.date, bool]:
    """The market's exchange where it departs from the rule: its closures (day -> open)."""
    return {d: False for d in cfg.closures}


@lru_cache(maxsize=4)
def simulate_cached(cfg: MarketConfig) -> Simulation:
    return simulate(cfg)


__all__ = ["ALL_SECTIONS", "MarketConfig", "Simulation", "simulate", "simulate_cached"]
