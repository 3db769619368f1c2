"""A deterministic synthetic Japanese equity market, the emulator's ground truth.

``generate_market(MarketConfig(seed, n_codes, start, end, signal))`` builds, from the seed alone:

* **Calendar**: the JPX trading days of :mod:`gogooku3.calendar` (weekends, holidays, 31 Dec-3 Jan).
* **Universe**: ``n_codes`` 5-character codes (4-digit code + "0"), 33 sectors (with the 17-sector
  mapping), MarketCode 0101/0102/0104/0106/0107 before 2022-04-04 and 0111/0112/0113 from then
  (the TSE restructuring), ScaleCategory, MarginCode; ~12% list mid-history, ~6% delist.
* **Prices** (per code i, trading day t, log returns)::

      r[t,i] = beta_i * m[t] + s[t, sector_i] + alpha[t-1,i] + sigma_i * e[t,i] + jump[t,i]

  market factor ``m ~ N(0.0002, 0.011)``, sector factors ``s ~ N(0, 0.006)``, beta ~ N(1, 0.3)
  clipped to [0.2, 2], idiosyncratic vol ~ 1.8% (higher for small caps), rare jumps of 12-35%.
  Raw prices are whole yen and clipped to the TSE daily price limits around the previous close
  (``UpperLimit``/``LowerLimit`` flag a High/Low at the limit). About 30% of codes have days
  without trades (OHLC and AdjustmentOpen/High/Low/Close null, Volume/TurnoverValue/
  AdjustmentVolume 0; the price does not move on such a day). About 4% of codes split or
  consolidate (``AdjustmentFactor`` 0.5 = 1:2 split on the ex-date); Adjustment* columns are
  adjusted for every split up to ``end`` (raw * product of later factors, volume divided by it).
* **Planted signal** ``alpha[t,i]`` (expected log return from close t to close t+1, known at
  the close of t; 0 when ``signal == 0``)::

      alpha = signal * ( -0.04   * clip(reversal_5d, -0.5, 0.5)
                         +0.0015 * volume_shock
                         +0.05   * foreign_flow
                         +0.01   * clip(roe - 0.08, -0.3, 0.3) )      # roe term 0 if none yet

  with (exact definitions in :data:`SIGNAL_COLUMNS`, values in :meth:`Market.planted`):
  ``reversal_5d = ln(AdjC_t / AdjC_{t-5})``; ``volume_shock = clip(ln(AdjVo_t / mean(AdjVo_{t-19..t})), -3, 3)``;
  ``foreign_flow = ForeignersBalance / ForeignersTotal`` of the stock's Section in the latest
  trades_spec week published on or before t (0 before any, e.g. the first days after the
  restructuring); ``roe = Profit * 4 / quarters / Equity`` of the latest statement known at the
  close of t (DisclosedTime before 15:00 counts that day, otherwise the next trading day).
* **statements** (:mod:`gogooku3.market.fundamentals`), **trades_spec**
  (:mod:`gogooku3.market.flows`; the foreigners' imbalance per Section is an AR(1) with
  std 0.04, which is what makes ``foreign_flow`` vary), **TOPIX**: a chain-linked cap-weighted
  index of all listed codes (base 1700).
* **indices, short_selling, weekly_margin_interest, earnings_calendar, dividends,
  daily_margin_interest, short_selling_positions** (:mod:`gogooku3.market.derived`) and **futures, index_option** (:mod:`gogooku3.market.derivatives`):
  computed from the prices and statements above, each from its own RNG stream; they plant no signal
  (nothing in ``alpha`` reads them).
* **the trading calendar**: the rule of :mod:`gogooku3.calendar`, except ``MarketConfig.closures``
  (days its exchange stays shut; everything is generated on that calendar).

``Market.frame(name, day)`` is the ground truth the emulator serves, in the canonical schema of
:mod:`gogooku3.jquants.datasets` (column order and dtypes exact).
"""

from gogooku3.market.generator import ConfigFieldError, MarketConfig
from gogooku3.market.market import SIGNAL_COLUMNS, Market, SignalColumn, generate_market

__all__ = ["SIGNAL_COLUMNS", "ConfigFieldError", "Market", "MarketConfig", "SignalColumn", "generate_market"]
