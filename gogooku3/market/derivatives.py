"""Index derivatives derived from a simulated market: TOPIX futures and Nikkei 225 options.

No signal is planted here (see :data:`gogooku3.market.market.SIGNAL_COLUMNS`); each dataset draws
from its own RNG stream (:data:`gogooku3.market.generator.DERIVED_STREAMS`).

* **futures**: TOPIX futures, the next three quarterly contracts (March, June, September,
  December). A contract's SQ day is the second Friday of its month (the trading day before when
  that is closed), its last trading day the trading day before. Price: ``F = S * exp(c * tau + b)``
  with ``S`` the TOPIX level, ``tau`` years to SQ, a carry ``c = -1.5%`` (dividends above the
  rate) and a basis ``b`` following an AR(1) (phi 0.9, sd 0.0006) shared by the contracts. The night
  session of trading date D runs the evening before: it opens near D-1's close and closes at TOPIX's
  open of D (in futures terms); the day session closes at TOPIX's close. The nearest contract is the
  central one (most volume and open interest).
* **index_option**: Nikkei 225 options. The underlying is TOPIX times an NT ratio (14 times an
  AR(1) in logs). The next three monthly SQs are listed, strikes every 500 yen within +-20% of the
  underlying, puts and calls, priced with Black-76 at an implied volatility tied to the market's:
  the at-the-money level is 0.9 times TOPIX's 20-day realised volatility plus 4 points plus an AR(1),
  a term structure reverting toward 20% (inverted when the short level is above it), a skew of
  -0.8 per unit log-moneyness; open interest peaks at the money, puts holding 1.0-1.6 times the
  calls' (an AR(1) in logs).
"""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import polars as pl

from gogooku3.calendar import is_trading_day, previous_trading_day
from gogooku3.jquants.datasets import FUTURES, INDEX_OPTION, OPTION_CALL, OPTION_PUT
from gogooku3.market.generator import Simulation, derived_stream

FUTURES_CARRY = -0.015
FUTURES_MULTIPLIER = 10_000.0  # yen per TOPIX point
OPTION_RATE, OPTION_DIVIDEND = 0.001, 0.02
STRIKE_STEP, STRIKE_RANGE = 500.0, 0.2
CONTRACTS = 3


def sq_day(year: int, month: int) -> dt.date:
    """The special quotation day of a contract month: its second Friday, the trading day before
    when that one is closed."""
    first = dt.date(year, month, 1)
    friday = first + dt.timedelta(days=(4 - first.weekday()) % 7 + 7)
    return friday if is_trading_day(friday) else previous_trading_day(friday)


def _months_from(day: dt.date, step: int, count: int) -> list[tuple[int, int, dt.date]]:
    """(year, month, SQ day) of the next ``count`` contract months (every ``step`` months) whose last
    trading day is on or after ``day``."""
    out: list[tuple[int, int, dt.date]] = []
    y, m = day.year, day.month
    while len(out) < count:
        if m % step == 0:
            sq = sq_day(y, m)
            if previous_trading_day(sq) >= day:
                out.append((y, m, sq))
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return out


def _ar1(rng: np.random.Generator, n: int, phi: float, sd: float) -> np.ndarray:
    out = np.zeros(n)
    for t in range(1, n):
        out[t] = phi * out[t - 1] + sd * rng.standard_normal()
    return out


def futures(sim: Simulation, seed: int) -> pl.DataFrame:
    """TOPIX futures bars per (Date, Code), sorted by (Date, Code)."""
    rng = derived_stream(seed, "futures")
    T = len(sim.days)
    s_open, s_close = sim.topix[:, 0], sim.topix[:, 3]
    basis = _ar1(rng, T, 0.9, 0.0006)
    rows: dict[str, list] = {f.name: [] for f in FUTURES.fields}
    prev_close: dict[str, float] = {}
    for t, day in enumerate(sim.days):
        for k, (y, m, sq) in enumerate(_months_from(day, 3, CONTRACTS)):
            code = f"1680{y % 100:02d}{m:02d}"
            tau = max((sq - day).days, 0) / 365.0
            carry = np.exp(FUTURES_CARRY * tau + basis[t])
            close = _tick(s_close[t] * carry, 0.5)
            night_close = _tick(s_open[t] * carry, 0.5)
            night_open = _tick(prev_close.get(code, night_close) * np.exp(0.001 * rng.standard_normal()), 0.5)
            day_open = _tick(night_close * np.exp(0.0005 * rng.standard_normal()), 0.5)
            spread = abs(rng.standard_normal()) * 0.002
            high = _tick(max(night_open, night_close, day_open, close) * (1 + spread), 0.5)
            low = _tick(min(night_open, night_close, day_open, close) * (1 - spread), 0.5)
            volume = float(np.round(rng.lognormal(np.log(60_000 if k == 0 else 2_000), 0.3)))
            open_interest = float(np.round(rng.lognormal(np.log(500_000 if k == 0 else 20_000), 0.1)))
            values = {
                "Date": day,
                "Code": code,
                "DerivativesProductCategory": "TOPIXF",
                "WholeDayOpen": night_open,
                "WholeDayHigh": high,
                "WholeDayLow": low,
                "WholeDayClose": close,
                "NightSessionOpen": night_open,
                "NightSessionHigh": max(night_open, night_close),
                "NightSessionLow": min(night_open, night_close),
                "NightSessionClose": night_close,
                "DaySessionOpen": day_open,
                "DaySessionHigh": high,
                "DaySessionLow": low,
                "DaySessionClose": close,
                "Volume": volume,
                "OpenInterest": open_interest,
                "TurnoverValue": float(np.round(volume * close * FUTURES_MULTIPLIER, -3)),
                "ContractMonth": f"{y}-{m:02d}",
                "EmergencyMarginTriggerDivision": "002",
                "LastTradingDay": previous_trading_day(sq),
                "SpecialQuotationDay": sq,
                "SettlementPrice": close,
                "CentralContractMonthFlag": "1" if k == 0 else "0",
            }
            for name, column in rows.items():
                column.append(values.get(name))
            prev_close[code] = close
    return pl.DataFrame(rows, schema=FUTURES.schema).sort("Date", "Code")


def _tick(x: float, tick: float) -> float:
    return float(np.round(x / tick) * tick)


_erf = np.frompyfunc(math.erf, 1, 1)


def ndtr(x: np.ndarray) -> np.ndarray:
    """The standard normal CDF (no SciPy in the base install)."""
    return 0.5 * (1.0 + _erf(np.asarray(x, dtype=np.float64) / math.sqrt(2.0)).astype(np.float64))


def _black76(
    forward: np.ndarray, strike: np.ndarray, tau: np.ndarray, vol: np.ndarray, call: np.ndarray
) -> np.ndarray:
    sd = vol * np.sqrt(tau)
    d1 = (np.log(forward / strike) + 0.5 * sd**2) / sd
    d2 = d1 - sd
    disc = np.exp(-OPTION_RATE * tau)
    c = disc * (forward * ndtr(d1) - strike * ndtr(d2))
    p = disc * (strike * ndtr(-d2) - forward * ndtr(-d1))
    return np.where(call, c, p)


def _nikkei(sim: Simulation, rng: np.random.Generator) -> np.ndarray:
    """(T, 2): the synthetic Nikkei 225's open and close, TOPIX times the NT ratio (the stream's
    first draws)."""
    nt = 14.0 * np.exp(_ar1(rng, len(sim.days), 0.98, 0.003))
    return np.stack([sim.topix[:, 0] * nt, sim.topix[:, 3] * nt], axis=1)


def nikkei_level(sim: Simulation, seed: int) -> np.ndarray:
    """(T, 2): the synthetic Nikkei 225's open and close, as :func:`index_option` prices it."""
    return _nikkei(sim, derived_stream(seed, "index_option"))


def index_option(sim: Simulation, seed: int) -> pl.DataFrame:
    """Nikkei 225 option bars per (Date, Code), sorted by (Date, Code)."""
    rng = derived_stream(seed, "index_option")
    level = _nikkei(sim, rng)
    T = len(sim.days)
    if T == 0:
        return pl.DataFrame(schema=INDEX_OPTION.schema)
    close = sim.topix[:, 3]
    ret = np.diff(np.log(close), prepend=np.log(close[0]))
    rv = np.array([ret[max(1, t - 19) : t + 1].std() * np.sqrt(252) if t >= 5 else 0.15 for t in range(T)])
    short_iv = np.clip(0.9 * rv + 0.04 + _ar1(rng, T, 0.9, 0.01), 0.08, 1.2)
    pc_ratio = 1.3 * np.exp(_ar1(rng, T, 0.95, 0.03))
    # one row per (day, listed expiry), then one per strike of its grid, then put and call
    series = [(t, y, m, sq) for t, day in enumerate(sim.days) for y, m, sq in _months_from(day, 1, CONTRACTS)]
    t_s = np.array([x[0] for x in series])
    sq_s = np.array([x[3] for x in series], dtype="datetime64[D]")
    month_s = np.array([f"{x[1]}-{x[2]:02d}" for x in series])
    yymm_s = np.array([f"{x[1] % 100:02d}{x[2]:02d}" for x in series])
    day_arr = np.array(sim.days, dtype="datetime64[D]")
    under_s = level[t_s, 1]
    lo = np.ceil(under_s * (1 - STRIKE_RANGE) / STRIKE_STEP).astype(np.int64)
    hi = np.floor(under_s * (1 + STRIKE_RANGE) / STRIKE_STEP).astype(np.int64)
    n = hi - lo + 1
    row = np.repeat(np.arange(len(series)), n)
    strike = (lo[row] + np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n)) * STRIKE_STEP
    row = np.concatenate([row, row])  # puts, then calls
    k = np.concatenate([strike, strike])
    call = np.repeat([False, True], len(strike))
    t = t_s[row]
    tau = np.maximum((sq_s[row] - day_arr[t]).astype(np.int64), 1) / 365.0
    atm = 0.20 + (short_iv[t] - 0.20) * np.exp(-tau / 0.25)
    forward = level[t, 1] * np.exp((OPTION_RATE - OPTION_DIVIDEND) * tau)
    moneyness = np.log(k / forward)
    vol = np.clip(atm * (1 - 0.8 * moneyness), 0.05, 1.5)
    price = np.maximum(np.round(_black76(forward, k, tau, vol, call)), 1.0)
    weight = np.exp(-0.5 * (moneyness / 0.06) ** 2)
    oi = np.round(weight * 8_000 * np.where(call, 1.0, pc_ratio[t]) * rng.lognormal(0, 0.2, len(k)))
    volume = np.round(oi * rng.uniform(0.02, 0.2, len(k)))
    traded = volume > 0
    pc = np.where(call, OPTION_CALL, OPTION_PUT)
    sq_dates = pl.Series(sq_s).cast(pl.Date)
    last_trading = pl.Series([previous_trading_day(d) for d in sq_dates.to_list()], dtype=pl.Date)
    df = pl.DataFrame(
        {
            "Date": day_arr[t],
            "Code": np.char.add(
                np.char.add(np.char.add("1", pc), yymm_s[row]),
                np.char.zfill(k.astype(np.int64).astype(str), 5),
            ),
            "WholeDayClose": np.where(traded, price, np.nan),
            "DaySessionClose": np.where(traded, price, np.nan),
            "Volume": volume,
            "OpenInterest": oi,
            "TurnoverValue": volume * price * 1000.0,
            "ContractMonth": month_s[row],
            "StrikePrice": k,
            "EmergencyMarginTriggerDivision": np.full(len(k), "002"),
            "PutCallDivision": pc,
            "LastTradingDay": last_trading.to_numpy()[row],
            "SpecialQuotationDay": sq_s[row],
            "SettlementPrice": price,
            "TheoreticalPrice": price,
            "BaseVolatility": np.round(atm * 100, 4),
            "UnderlyingPrice": np.round(level[t, 1], 2),
            "ImpliedVolatility": np.round(vol * 100, 4),
            "InterestRate": np.full(len(k), OPTION_RATE * 100),
        },
        nan_to_null=True,
    )
    return df.select(
        [
            (pl.col(f.name) if f.name in df.columns else pl.lit(None)).cast(f.dtype).alias(f.name)
            for f in INDEX_OPTION.fields
        ]
    ).sort("Date", "Code")
