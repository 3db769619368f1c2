"""The feature catalogue: every feature the pipeline computes, defined once as data.

Inputs are the base columns of :data:`gogooku3.features.prepare.BASE_COLUMNS` (split-adjusted
prices, volume, TOPIX close, as-of statement fields, trades_spec flows, row counters) or earlier
features. Names starting with ``_`` are intermediates (``output=False``): computed, then dropped.

:func:`catalogue_records` is what ``include/features/catalogue.json`` holds (regenerate with
``python -m gogooku3.features.catalogue``); the model and the quality gates read that file.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from gogooku3.features.ops import OPERATIONS
from gogooku3.features.prepare import BASE_COLUMNS, BASE_HISTORY
from gogooku3.features.spec import Feature, split_phases, validate
from gogooku3.features.targets import TARGETS

CATALOGUE_PATH = Path(__file__).resolve().parents[2] / "include" / "features" / "catalogue.json"

_F: list[Feature] = []


def _add(name, op, inputs, group, desc, window=None, output=True, **params) -> str:
    _F.append(Feature(name, op, tuple(inputs), group, desc, window, dict(params), output))
    return name


def _tmp(name, op, inputs, group, window=None, **params) -> str:
    return _add(name, op, inputs, group, f"intermediate: {OPERATIONS[op].meaning}", window, False, **params)


# ------------------------------------------------------------------ returns (winsorised)
for _w in (1, 5, 10, 20):
    _tmp(f"_ret_{_w}d_raw", "pct_change", ["px_close"], "returns", _w)
    _add(
        f"ret_{_w}d",
        "cs_winsor",
        [f"_ret_{_w}d_raw"],
        "returns",
        f"{_w}-day return of the adjusted close, winsorised at +-5 sigma of the day's cross-section",
        _w,
        k=5.0,
    )
_tmp("_prev_close", "shift", ["px_close"], "returns", 1)
_add(
    "gap_overnight",
    "ratio",
    ["px_open", "_prev_close"],
    "returns",
    "open / previous close - 1 (overnight gap)",
    1,
)
_add("ret_intraday", "ratio", ["px_close", "px_open"], "returns", "close / open - 1 (intraday return)")
_tmp("_gross_1d", "div", ["px_close", "_prev_close"], "returns", 1)
_add("log_ret_1d", "log", ["_gross_1d"], "returns", "log return of the adjusted close over 1 day", 1)

# ------------------------------------------------------------------ moving averages
for _w in (5, 10, 20, 60, 200):
    _tmp(f"_ema_{_w}", "ema", ["px_close"], "ma", _w)
    _add(
        f"ema_{_w}_dev",
        "ratio",
        ["px_close", f"_ema_{_w}"],
        "ma",
        f"adjusted close / EMA{_w} - 1 (price deviation from its {_w}-day EMA)",
        _w,
    )
for _a, _b in ((5, 20), (10, 60), (20, 60), (60, 200)):
    _add(f"ema_gap_{_a}_{_b}", "ratio", [f"_ema_{_a}", f"_ema_{_b}"], "ma", f"EMA{_a} / EMA{_b} - 1", _b)
for _w, _lag in ((5, 1), (20, 5), (60, 5)):
    _add(f"ema_{_w}_slope", "pct_change", [f"_ema_{_w}"], "ma", f"EMA{_w} change over {_lag} day(s)", _lag)
for _a, _b in ((5, 20), (20, 60), (60, 200)):
    _add(f"ema_{_a}_above_{_b}", "gt", [f"_ema_{_a}", f"_ema_{_b}"], "ma", f"flag EMA{_a} > EMA{_b}", _b)
    _tmp(f"_ema_{_a}_above_{_b}_prev", "shift", [f"ema_{_a}_above_{_b}"], "ma", 1)
    _add(
        f"ema_cross_up_{_a}_{_b}",
        "gt",
        [f"ema_{_a}_above_{_b}", f"_ema_{_a}_above_{_b}_prev"],
        "ma",
        f"flag EMA{_a} crossed above EMA{_b} today (golden cross)",
        _b,
    )
    _add(
        f"ema_cross_down_{_a}_{_b}",
        "lt",
        [f"ema_{_a}_above_{_b}", f"_ema_{_a}_above_{_b}_prev"],
        "ma",
        f"flag EMA{_a} crossed below EMA{_b} today (dead cross)",
        _b,
    )
_tmp("_ribbon_hi", "max", ["_ema_5", "_ema_10", "_ema_20", "_ema_60"], "ma")
_tmp("_ribbon_lo", "min", ["_ema_5", "_ema_10", "_ema_20", "_ema_60"], "ma")
_tmp("_ribbon_width", "sub", ["_ribbon_hi", "_ribbon_lo"], "ma")
_add(
    "ma_ribbon_spread",
    "div",
    ["_ribbon_width", "px_close"],
    "ma",
    "(max - min of EMA5/10/20/60) / close: how fanned-out the MA ribbon is",
    60,
)
_tmp("_ema_bull_1", "gt", ["_ema_5", "_ema_20"], "ma")
_tmp("_ema_bull_2", "gt", ["_ema_20", "_ema_60"], "ma")
_add("ma_bull_alignment", "mul", ["_ema_bull_1", "_ema_bull_2"], "ma", "flag EMA5 > EMA20 > EMA60", 60)
_add("ret_5d_x_ema_20_dev", "mul", ["_ret_5d_raw", "ema_20_dev"], "ma", "5-day return x EMA20 deviation", 20)
_add("ret_1d_x_ema_5_dev", "mul", ["_ret_1d_raw", "ema_5_dev"], "ma", "1-day return x EMA5 deviation", 5)
_add(
    "ret_20d_x_ema_gap_20_60",
    "mul",
    ["_ret_20d_raw", "ema_gap_20_60"],
    "ma",
    "20-day return x EMA20/EMA60 gap",
    60,
)
for _w in (20, 60):
    _tmp(f"_ret_mean_{_w}", "rmean", ["_ret_1d_raw"], "returns", _w)
    _tmp(f"_ret_std_{_w}", "rstd", ["_ret_1d_raw"], "returns", _w)
    _tmp(f"_sharpe_{_w}_daily", "div", [f"_ret_mean_{_w}", f"_ret_std_{_w}"], "returns", _w)
    _add(
        f"sharpe_{_w}d",
        "scale",
        [f"_sharpe_{_w}_daily"],
        "returns",
        f"rolling {_w}-day Sharpe of daily returns (mean/std, annualised by sqrt 252)",
        _w,
        k=252**0.5,
    )

# ------------------------------------------------------------------ RSI (Wilder smoothing)
_tmp("_d_close", "diff", ["px_close"], "rsi", 1)
_tmp("_up", "pos", ["_d_close"], "rsi")
_tmp("_down", "negpart", ["_d_close"], "rsi")
for _w in (14, 2):
    _tmp(f"_up_{_w}", "ema", ["_up"], "rsi", _w, alpha=1.0 / _w)
    _tmp(f"_down_{_w}", "ema", ["_down"], "rsi", _w, alpha=1.0 / _w)
    _tmp(f"_updown_{_w}", "add", [f"_up_{_w}", f"_down_{_w}"], "rsi")
    _tmp(f"_rsi_{_w}_frac", "div", [f"_up_{_w}", f"_updown_{_w}"], "rsi", _w)
    _add(
        f"rsi_{_w}",
        "scale",
        [f"_rsi_{_w}_frac"],
        "rsi",
        f"RSI({_w}) with Wilder smoothing, 0..100",
        _w,
        k=100.0,
    )
_add("rsi_14_delta", "diff", ["rsi_14"], "rsi", "RSI(14) change over 5 days", 5)
_add("rsi_14_overbought", "gt", ["rsi_14"], "rsi", "flag RSI(14) > 70", 14, value=70.0)
_add("rsi_14_oversold", "lt", ["rsi_14"], "rsi", "flag RSI(14) < 30", 14, value=30.0)

# ------------------------------------------------------------------ MACD (12, 26, 9), price-normalised
_tmp("_ema_12", "ema", ["px_close"], "macd", 12)
_tmp("_ema_26", "ema", ["px_close"], "macd", 26)
_tmp("_macd_raw", "sub", ["_ema_12", "_ema_26"], "macd", 26)
_add("macd", "div", ["_macd_raw", "px_close"], "macd", "(EMA12 - EMA26) / close", 26)
_add("macd_signal", "ema", ["macd"], "macd", "9-day EMA of macd", 9)
_add("macd_hist", "sub", ["macd", "macd_signal"], "macd", "macd - macd_signal (histogram)", 26)
_tmp("_macd_pos", "gt", ["macd_hist"], "macd", value=0.0)
_tmp("_macd_pos_prev", "shift", ["_macd_pos"], "macd", 1)
_add(
    "macd_cross_up",
    "gt",
    ["_macd_pos", "_macd_pos_prev"],
    "macd",
    "flag macd crossed above its signal today",
    26,
)

# ------------------------------------------------------------------ Bollinger (20, 2 sigma)
_tmp("_bb_mid", "rmean", ["px_close"], "bollinger", 20)
_tmp("_bb_sd", "rstd", ["px_close"], "bollinger", 20)
_tmp("_bb_2sd", "scale", ["_bb_sd"], "bollinger", k=2.0)
_tmp("_bb_upper", "add", ["_bb_mid", "_bb_2sd"], "bollinger")
_tmp("_bb_lower", "sub", ["_bb_mid", "_bb_2sd"], "bollinger")
_tmp("_bb_from_lower", "sub", ["px_close", "_bb_lower"], "bollinger")
_tmp("_bb_4sd", "scale", ["_bb_sd"], "bollinger", k=4.0)
_add(
    "bb_pct_b",
    "div",
    ["_bb_from_lower", "_bb_4sd"],
    "bollinger",
    "Bollinger %b: (close - lower) / (upper - lower), 20 days, 2 sigma",
    20,
)
_add(
    "bb_bandwidth",
    "div",
    ["_bb_4sd", "_bb_mid"],
    "bollinger",
    "Bollinger bandwidth: (upper - lower) / middle",
    20,
)
_add("bb_above_upper", "gt", ["px_close", "_bb_upper"], "bollinger", "flag close above the upper band", 20)
_add("bb_below_lower", "lt", ["px_close", "_bb_lower"], "bollinger", "flag close below the lower band", 20)

# ------------------------------------------------------------------ volatility
for _w in (5, 20, 60):
    _tmp(f"_sd_{_w}", "rstd", ["_ret_1d_raw"], "volatility", _w)
    _add(
        f"vol_{_w}d",
        "scale",
        [f"_sd_{_w}"],
        "volatility",
        f"{_w}-day volatility of daily returns, annualised (sqrt 252)",
        _w,
        k=252**0.5,
    )
_add("vol_ratio_5_20", "div", ["vol_5d", "vol_20d"], "volatility", "vol_5d / vol_20d", 20)
_add("vol_ratio_20_60", "div", ["vol_20d", "vol_60d"], "volatility", "vol_20d / vol_60d", 60)
_add("vol_20d_change", "pct_change", ["vol_20d"], "volatility", "vol_20d change over 5 days", 5)
_tmp("_hl", "div", ["px_high", "px_low"], "volatility")
_tmp("_log_hl", "log", ["_hl"], "volatility")
_tmp("_log_hl2", "square", ["_log_hl"], "volatility")
_tmp("_pk_mean", "rmean", ["_log_hl2"], "volatility", 20)
_tmp("_pk_var", "scale", ["_pk_mean"], "volatility", k=252.0 / (4.0 * 0.6931471805599453))
_add(
    "vol_parkinson_20d",
    "sqrt",
    ["_pk_var"],
    "volatility",
    "Parkinson high-low volatility over 20 days, annualised",
    20,
)
_tmp("_hl_width", "sub", ["px_high", "px_low"], "volatility")
_add("hl_range", "div", ["_hl_width", "px_close"], "volatility", "(high - low) / close", 1)
_tmp("_h_pc", "sub", ["px_high", "_prev_close"], "volatility")
_tmp("_l_pc", "sub", ["px_low", "_prev_close"], "volatility")
_tmp("_h_pc_abs", "abs", ["_h_pc"], "volatility")
_tmp("_l_pc_abs", "abs", ["_l_pc"], "volatility")
_tmp("_true_range", "max", ["_hl_width", "_h_pc_abs", "_l_pc_abs"], "volatility")
_tmp("_atr_14", "ema", ["_true_range"], "volatility", 14, alpha=1.0 / 14)
_add("atr_14_pct", "div", ["_atr_14", "px_close"], "volatility", "Wilder ATR(14) / close", 14)

# ------------------------------------------------------------------ volume
for _w in (5, 20):
    _tmp(f"_volu_mean_{_w}", "rmean", ["volume"], "volume", _w)
    _add(
        f"volume_ratio_{_w}d",
        "div",
        ["volume", f"_volu_mean_{_w}"],
        "volume",
        f"volume / its {_w}-day mean",
        _w,
    )
_add(
    "volume_trend_5_20",
    "div",
    ["_volu_mean_5", "_volu_mean_20"],
    "volume",
    "5-day mean volume / 20-day mean volume",
    20,
)
_tmp("_tov_mean_20", "rmean", ["turnover"], "volume", 20)
_add(
    "turnover_ratio_20d",
    "div",
    ["turnover", "_tov_mean_20"],
    "volume",
    "turnover value / its 20-day mean",
    20,
)
_add(
    "log_turnover_20d",
    "log",
    ["_tov_mean_20"],
    "volume",
    "log of the 20-day mean turnover value (size/liquidity)",
    20,
)
_tmp("_abs_ret", "abs", ["_ret_1d_raw"], "volume")
# Ratio of 20-day sums rather than the mean of daily ratios: days without trades (turnover 0)
# would otherwise be x/0 and leave the window short of 20 values.
_tmp("_abs_ret_sum_20", "rsum", ["_abs_ret"], "volume", 20)
_tmp("_tov_sum_20", "rsum", ["turnover"], "volume", 20)
_tmp("_illiq_20", "div", ["_abs_ret_sum_20", "_tov_sum_20"], "volume", 20)
_add(
    "amihud_20d",
    "scale",
    ["_illiq_20"],
    "volume",
    "Amihud illiquidity over 20 days: sum |daily return| / sum turnover value (x1e9)",
    20,
    k=1e9,
)
_add("volume_spike", "gt", ["volume_ratio_20d"], "volume", "flag volume > 3x its 20-day mean", 20, value=3.0)
_add("is_traded", "gt", ["volume"], "volume", "flag the stock traded today (volume > 0)", value=0.0)

# ------------------------------------------------------------------ market (TOPIX)
for _w in (1, 5, 20):
    _add(f"mkt_ret_{_w}d", "pct_change", ["mkt_close"], "market", f"TOPIX {_w}-day return", _w)
_tmp("_mkt_sd_20", "rstd", ["mkt_ret_1d"], "market", 20)
_add("mkt_vol_20d", "scale", ["_mkt_sd_20"], "market", "TOPIX 20-day volatility, annualised", 20, k=252**0.5)
_tmp("_mkt_ema_20", "ema", ["mkt_close"], "market", 20)
_add("mkt_ema_20_dev", "ratio", ["mkt_close", "_mkt_ema_20"], "market", "TOPIX / its EMA20 - 1", 20)
_tmp("_rm", "mul", ["_ret_1d_raw", "mkt_ret_1d"], "market")
_tmp("_mm", "square", ["mkt_ret_1d"], "market")
_tmp("_rr", "square", ["_ret_1d_raw"], "market")
_tmp("_mean_r", "rmean", ["_ret_1d_raw"], "market", 60)
_tmp("_mean_m", "rmean", ["mkt_ret_1d"], "market", 60)
_tmp("_mean_rm", "rmean", ["_rm"], "market", 60)
_tmp("_mean_mm", "rmean", ["_mm"], "market", 60)
_tmp("_mean_rr", "rmean", ["_rr"], "market", 60)
_tmp("_mr_mm", "mul", ["_mean_r", "_mean_m"], "market")
_tmp("_cov_rm", "sub", ["_mean_rm", "_mr_mm"], "market", 60)
_tmp("_m_sq", "square", ["_mean_m"], "market")
_tmp("_var_m", "sub", ["_mean_mm", "_m_sq"], "market", 60)
_tmp("_r_sq", "square", ["_mean_r"], "market")
_tmp("_var_r", "sub", ["_mean_rr", "_r_sq"], "market", 60)
_add("beta_60d", "div", ["_cov_rm", "_var_m"], "market", "60-day beta of daily returns on TOPIX returns", 60)
_tmp("_beta_m", "mul", ["beta_60d", "_mean_m"], "market")
_tmp("_alpha_daily", "sub", ["_mean_r", "_beta_m"], "market", 60)
_add(
    "alpha_60d",
    "scale",
    ["_alpha_daily"],
    "market",
    "60-day Jensen alpha (mean r - beta mean m), annualised x252",
    60,
    k=252.0,
)
_tmp("_var_rm", "mul", ["_var_r", "_var_m"], "market")
_tmp("_sd_rm", "sqrt", ["_var_rm"], "market")
_add(
    "corr_mkt_60d",
    "div",
    ["_cov_rm", "_sd_rm"],
    "market",
    "60-day correlation of daily returns with TOPIX",
    60,
)
for _w in (5, 20):
    _add(
        f"rel_strength_{_w}d",
        "sub",
        [f"_ret_{_w}d_raw", f"mkt_ret_{_w}d"],
        "market",
        f"{_w}-day return minus TOPIX {_w}-day return",
        _w,
    )
_tmp("_beta_mret", "mul", ["beta_60d", "mkt_ret_1d"], "market")
_add(
    "resid_ret_1d",
    "sub",
    ["_ret_1d_raw", "_beta_mret"],
    "market",
    "1-day return minus beta_60d x TOPIX return",
    60,
)

# ------------------------------------------------------------------ flows (interim/trades_spec_daily, per Section)
_add(
    "flow_foreigners_net_ratio",
    "copy",
    ["flow_foreigners_net_ratio_in"],
    "flow",
    "foreigners' net buying / gross trading value in the stock's Section, latest usable week",
)
_add(
    "flow_individuals_net_ratio",
    "copy",
    ["flow_individuals_net_ratio_in"],
    "flow",
    "individuals' net buying / gross trading value in the stock's Section, latest usable week",
)
_add(
    "flow_smart_money_idx",
    "copy",
    ["flow_smart_money_in"],
    "flow",
    "smart-money index: foreigners' minus individuals' net ratio (latest usable week)",
)
_add(
    "flow_smart_money_wow",
    "copy",
    ["flow_smart_money_wow_in"],
    "flow",
    "smart-money index change vs the previous week",
)
_add(
    "flow_smart_money_change_5d",
    "diff",
    ["flow_smart_money_idx"],
    "flow",
    "smart-money index change over 5 trading days",
    5,
)
_add(
    "flow_smart_money_z", "copy", ["flow_smart_money_z_in"], "flow", "smart-money index z-score over 52 weeks"
)
_add(
    "flow_smart_money_extreme_hi", "ge", ["flow_smart_money_z"], "flow", "flag smart-money z >= 2", value=2.0
)
_add(
    "flow_smart_money_extreme_lo",
    "le",
    ["flow_smart_money_z"],
    "flow",
    "flag smart-money z <= -2",
    value=-2.0,
)
_add(
    "flow_foreigners_x_ret_5d",
    "mul",
    ["flow_foreigners_net_ratio", "_ret_5d_raw"],
    "flow",
    "foreigners' net ratio x the stock's 5-day return",
    5,
)
_add(
    "flow_days_since_published",
    "copy",
    ["flow_days_since_published_in"],
    "flow",
    "trading days since the flows in use became usable (1 on the first day)",
)
_add(
    "flow_is_fresh",
    "gt",
    ["flow_is_fresh_in"],
    "flow",
    "flag first day this week's flows are usable",
    value=0.5,
)

# ------------------------------------------------------------------ fundamentals (statements as of T+1, 15:00 cutoff)
_add(
    "fin_sales_growth",
    "ratio",
    ["stmt_net_sales", "stmt_prev_net_sales"],
    "fundamentals",
    "net sales growth vs the same period a year earlier (cumulative figures)",
)
_add(
    "fin_op_growth",
    "ratio",
    ["stmt_operating_profit", "stmt_prev_operating_profit"],
    "fundamentals",
    "operating profit growth vs the same period a year earlier",
)
_add(
    "fin_profit_growth",
    "ratio",
    ["stmt_profit", "stmt_prev_profit"],
    "fundamentals",
    "net profit growth vs the same period a year earlier",
)
_add(
    "fin_op_margin",
    "div",
    ["stmt_operating_profit", "stmt_net_sales"],
    "fundamentals",
    "operating profit / net sales",
)
_add("fin_net_margin", "div", ["stmt_profit", "stmt_net_sales"], "fundamentals", "net profit / net sales")
_tmp("_profit_ann", "mul", ["stmt_profit", "stmt_annualize"], "fundamentals")
_add("fin_roe", "div", ["_profit_ann", "stmt_equity"], "fundamentals", "annualised net profit / equity")
_add(
    "fin_roa",
    "div",
    ["_profit_ann", "stmt_total_assets"],
    "fundamentals",
    "annualised net profit / total assets",
)
_add("fin_equity_ratio", "div", ["stmt_equity", "stmt_total_assets"], "fundamentals", "equity / total assets")
_tmp("_eps_ann", "mul", ["stmt_eps", "stmt_annualize"], "fundamentals")
_tmp("_eps_vs_fc", "sub", ["_eps_ann", "stmt_prev_forecast_eps"], "fundamentals")
_tmp("_prev_fc_abs", "abs", ["stmt_prev_forecast_eps"], "fundamentals")
_add(
    "fin_eps_surprise",
    "div",
    ["_eps_vs_fc", "_prev_fc_abs"],
    "fundamentals",
    "(annualised EPS - the forecast EPS outstanding before this disclosure) / |that forecast|",
)
_add(
    "fin_op_progress",
    "div",
    ["stmt_operating_profit", "stmt_forecast_operating_profit"],
    "fundamentals",
    "cumulative operating profit / full-year forecast (progress rate)",
)
_add(
    "fin_forecast_op_revision",
    "ratio",
    ["stmt_forecast_operating_profit", "stmt_prev_forecast_operating_profit"],
    "fundamentals",
    "full-year operating profit forecast vs the previous disclosure's",
)
_add(
    "fin_book_to_price",
    "div",
    ["stmt_bps", "raw_close"],
    "fundamentals",
    "book value per share / close (unadjusted)",
)
_add(
    "fin_earnings_yield",
    "div",
    ["_eps_ann", "raw_close"],
    "fundamentals",
    "annualised EPS / close (unadjusted)",
)
_add(
    "fin_dividend_yield",
    "div",
    ["stmt_dividend", "raw_close"],
    "fundamentals",
    "annual dividend per share / close",
)
_add(
    "fin_days_since_disclosure",
    "days_since",
    ["stmt_disclosed_date"],
    "fundamentals",
    "calendar days since the statement in use was disclosed",
)
_add(
    "fin_is_fresh",
    "lt",
    ["fin_days_since_disclosure"],
    "fundamentals",
    "flag statement disclosed within 10 days",
    value=10.5,
)
_add(
    "fin_available",
    "notnull",
    ["stmt_disclosed_date"],
    "fundamentals",
    "flag a statement is usable on this date",
)

# ------------------------------------------------------------------ margin (weekly_margin_interest, usable 3 trading days after its record)
# Balances are raw shares of their record date; the 20-day mean adjusted volume times today's
# adjustment multiple is the same raw unit (a split between the record and today mismatches them
# for the days until the next record).
_tmp("_px_per_raw", "div", ["px_close", "raw_close"], "margin")
_tmp("_adv20_raw", "mul", ["_volu_mean_20", "_px_per_raw"], "margin", 20)
_tmp("_margin_net", "sub", ["margin_long_in", "margin_short_in"], "margin")
for _name, _src, _what in (
    ("margin_long_to_adv", "margin_long_in", "long margin balance"),
    ("margin_short_to_adv", "margin_short_in", "short margin balance"),
    ("margin_net_to_adv", "_margin_net", "net (long - short) margin balance"),
    ("margin_net_wow_to_adv", "margin_net_wow_in", "weekly change of the net margin balance"),
):
    _add(
        _name, "div", [_src, "_adv20_raw"], "margin", f"{_what} / 20-day average volume (days of volume)", 20
    )
_add(
    "margin_short_long_ratio",
    "div",
    ["margin_short_in", "margin_long_in"],
    "margin",
    "short / long margin balance",
)
_add(
    "margin_ratio_z_52w",
    "copy",
    ["margin_ratio_z_in"],
    "margin",
    "z-score of the short/long margin ratio over the code's last 52 weekly records",
)

# margin alerts (daily_margin_interest, usable the day after publication)
_add(
    "margin_alert_short_long",
    "copy",
    ["alert_short_long_in"],
    "margin",
    "short / long balance of the code's daily margin alert (null unless the code is under daily publication)",
)
_add(
    "margin_alert_active",
    "notnull",
    ["alert_short_long_in"],
    "margin",
    "flag the code is under daily margin publication",
)

# ------------------------------------------------------------------ short selling (per 33-sector, the previous trading day's)
_add(
    "short_share_sector",
    "copy",
    ["short_share_in"],
    "short_selling",
    "short sales / all sales in the stock's sector",
)
_add(
    "short_share_sector_z_60d",
    "copy",
    ["short_share_z_in"],
    "short_selling",
    "z-score of the sector's short share over its last 60 trading days",
)
_add(
    "short_share_sector_mom_5d",
    "copy",
    ["short_share_mom_5d_in"],
    "short_selling",
    "change of the sector's short share over 5 trading days",
)

# short position reports (short_selling_positions, usable the day after disclosure)
_add(
    "short_pos_ratio",
    "copy",
    ["short_pos_ratio_in"],
    "short_selling",
    "sum of the open reported short positions, percent of the shares outstanding (0 when none)",
)
_add(
    "short_pos_sellers",
    "copy",
    ["short_pos_sellers_in"],
    "short_selling",
    "number of short sellers with an open reported position of 0.5% or more",
)

# ------------------------------------------------------------------ earnings calendar (announced dates, usable the day after)
_tmp("_earn_minus_days", "days_since", ["earn_next_date"], "earnings")
_add(
    "earn_days_to_next",
    "scale",
    ["_earn_minus_days"],
    "earnings",
    "calendar days to the next announced earnings date (null when none is announced ahead)",
    k=-1.0,
)
_add("earn_scheduled", "notnull", ["earn_next_date"], "earnings", "flag an earnings date is announced ahead")
_add(
    "earn_pre_window_5d",
    "le",
    ["earn_days_to_next"],
    "earnings",
    "flag the announced earnings date is within 5 calendar days",
    value=5.0,
)
_add(
    "earn_post_window_5d",
    "le",
    ["fin_days_since_disclosure"],
    "earnings",
    "flag the statement in use was disclosed within the last 5 calendar days",
    value=5.0,
)

# ------------------------------------------------------------------ dividends (notices usable like statements, T+1)
_tmp("_div_minus_days", "days_since", ["div_next_ex_date"], "dividends")
_add(
    "div_days_to_ex",
    "scale",
    ["_div_minus_days"],
    "dividends",
    "calendar days to the next announced ex-dividend date (0 on it; null when none is known ahead)",
    k=-1.0,
)
_add(
    "div_days_since_ex",
    "days_since",
    ["div_last_ex_date"],
    "dividends",
    "calendar days since the last ex-dividend date (null before the code's first known one)",
)
_add(
    "div_ex_window_5d",
    "le",
    ["div_days_to_ex"],
    "dividends",
    "flag the next ex-dividend date is within 5 calendar days",
    value=5.0,
)
_add(
    "div_fwd_yield",
    "div",
    ["div_fwd_amount_in", "raw_close"],
    "dividends",
    "announced dividends per share still ahead (ex-date on or after T, decided amounts) / close",
)

# ------------------------------------------------------------------ futures (TOPIX futures, the previous trading day's)
_add(
    "fut_overnight_ret",
    "copy",
    ["fut_overnight_ret_in"],
    "futures",
    "central TOPIX future's night-session return (night close / previous day-session close - 1)",
)
_add(
    "fut_basis_z_60d",
    "copy",
    ["fut_basis_z_in"],
    "futures",
    "z-score of the central TOPIX future's annualised basis to TOPIX over 60 days",
)

# ------------------------------------------------------------------ options (Nikkei 225 options, the previous trading day's)
_add("opt_atm_iv_30d", "copy", ["opt_atm_iv_30d_in"], "options", "ATM implied volatility at 30 days")
_add(
    "opt_iv_term_slope",
    "copy",
    ["opt_iv_term_slope_in"],
    "options",
    "ATM implied volatility of the second expiry minus the first's (negative: inverted)",
)
_add(
    "opt_put_call_oi",
    "copy",
    ["opt_put_call_oi_in"],
    "options",
    "put open interest / call open interest across all series",
)

# ------------------------------------------------------------------ sector index (33-sector indices, same day like TOPIX)
for _w in (1, 5, 20):
    _add(
        f"sec_idx_ret_{_w}d",
        "pct_change",
        ["sec_idx_close"],
        "sector_index",
        f"sector index {_w}-day return",
        _w,
    )
for _w in (5, 20):
    _add(
        f"rel_sector_idx_{_w}d",
        "sub",
        [f"_ret_{_w}d_raw", f"sec_idx_ret_{_w}d"],
        "sector_index",
        f"{_w}-day return minus the sector index's",
        _w,
    )
_add(
    "sector_idx_vs_mkt_20d",
    "sub",
    ["sec_idx_ret_20d", "mkt_ret_20d"],
    "sector_index",
    "sector index 20-day return minus TOPIX's",
    20,
)

# ------------------------------------------------------------------ market regime (TOPIX, date-level)
_add("mkt_drawdown_252d", "copy", ["mkt_drawdown_252d_in"], "regime", "TOPIX close / its 252-day high - 1")
_add(
    "mkt_ret_z_252d", "copy", ["mkt_ret_z_252d_in"], "regime", "z-score of TOPIX's daily return over 252 days"
)
_add(
    "mkt_vol_z_252d",
    "copy",
    ["mkt_vol_z_252d_in"],
    "regime",
    "z-score of TOPIX's 20-day volatility over 252 days",
)

# ------------------------------------------------------------------ peers (the model's correlation graph)
_add(
    "peer_degree",
    "copy",
    ["peer_degree_in"],
    "peers",
    "how many codes count this one among their 10 most correlated peers over 60 days (in-degree)",
)
_add("peer_ret_1d", "copy", ["peer_ret_1d_in"], "peers", "mean ret_1d of the 10 most correlated peers")
_add("peer_corr_mean", "copy", ["peer_corr_in"], "peers", "mean 60-day return correlation with those peers")
_add("peer_rel_ret_1d", "sub", ["ret_1d", "peer_ret_1d"], "peers", "ret_1d minus its peers' mean")

# ------------------------------------------------------------------ cross-sectional z-scores and ranks
for _src in (
    "ret_1d",
    "ret_5d",
    "ret_20d",
    "vol_20d",
    "volume_ratio_20d",
    "rsi_14",
    "ema_20_dev",
    "beta_60d",
    "fin_roe",
    "fin_book_to_price",
    "log_turnover_20d",
):
    _add(
        f"cs_z_{_src}", "cs_z", [_src], "cross_sectional", f"z-score of {_src} within the day's cross-section"
    )
    _add(
        f"cs_rank_{_src}",
        "cs_rank",
        [_src],
        "cross_sectional",
        f"percentile rank of {_src} within the day's cross-section",
    )

# ------------------------------------------------------------------ sector-relative (Sector33Code)
for _src in ("ret_1d", "ret_5d", "ret_20d", "vol_20d", "ema_20_dev", "fin_roe", "fin_op_margin"):
    _add(
        f"sec_rel_{_src}", "sec_demean", [_src], "sector_relative", f"{_src} minus its sector's mean that day"
    )
for _src in ("ret_5d", "vol_20d", "fin_book_to_price"):
    _add(f"sec_z_{_src}", "sec_z", [_src], "sector_relative", f"z-score of {_src} within its sector that day")

# ------------------------------------------------------------------ maturity
for _w in (5, 20, 60, 200):
    _add(
        f"is_mature_{_w}d",
        "ge",
        ["obs_count"],
        "maturity",
        f"flag the code has >= {_w} rows of history, so {_w}-day windows are full",
        _w,
        value=float(_w),
    )

FEATURES: tuple[Feature, ...] = tuple(_F)
LAYERS = validate(FEATURES, frozenset(BASE_COLUMNS))
#: LAYERS split by phase: per-code series (Code, Date order), then cross-sections (day order).
SERIES_LAYERS, CROSS_LAYERS = split_phases(LAYERS)
OUTPUT_FEATURES: tuple[str, ...] = tuple(f.name for f in FEATURES if f.output)
MAX_LOOKBACK: int = max(f.lookback for f in FEATURES)


def feature(name: str) -> Feature:
    for f in FEATURES:
        if f.name == name:
            return f
    raise KeyError(f"no feature {name!r} in the catalogue")


def min_history(name: str) -> int:
    """Rows of a code's own history (this row included) the feature needs before it is mature.

    Each op adds the rows of its :class:`~gogooku3.features.ops.Lookback` rule in
    :data:`~gogooku3.features.ops.OPERATIONS`: lags of ``w`` add ``w`` rows, trailing windows
    ``w - 1`` (``w`` rows in all), EMAs count as mature after ``w`` (their span) rows, other ops
    add none; base columns need 1, or their :data:`~gogooku3.features.prepare.BASE_HISTORY`. The quality gates measure coverage only on rows where
    ``obs_count >= min_history``.
    """
    cache: dict[str, int] = {}

    def go(n: str) -> int:
        if n not in cache:
            if n in BASE_COLUMNS:
                cache[n] = BASE_HISTORY.get(n, 1)
            else:
                f = feature(n)
                cache[n] = max(go(i) for i in f.inputs) + f.operation.lookback.rows_added(f.window)
        return cache[n]

    return go(name)


def catalogue_records() -> list[dict]:
    """Output features then targets as plain records: name, kind, group, window, dtype, description."""
    rows = [
        {
            "name": f.name,
            "kind": "feature",
            "group": f.group,
            "grouping": f.grouping,
            "op": f.op,
            "inputs": list(f.inputs),
            "window": f.window,
            "min_history": min_history(f.name),
            "dtype": f.dtype,
            "description": f.description,
        }
        for f in FEATURES
        if f.output
    ]
    rows += [
        {
            "name": t.name,
            "kind": "target",
            "group": "target",
            "grouping": "code",
            "op": t.op,
            "inputs": ["px_close"],
            "window": t.horizon,
            "min_history": 1,
            "dtype": t.dtype,
            "description": t.description,
        }
        for t in TARGETS
    ]
    return rows


def catalogue_json() -> str:
    return json.dumps({"version": 1, "features": catalogue_records()}, indent=1, ensure_ascii=False) + "\n"


def write_catalogue(path: Path = CATALOGUE_PATH) -> Path:
    """Regenerate the catalogue file (atomically) from the code."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(catalogue_json(), encoding="utf-8")
    tmp.replace(path)
    return path


if __name__ == "__main__":  # pragma: no cover - python -m gogooku3.features.catalogue
    print(write_catalogue(Path(sys.argv[1]) if len(sys.argv) > 1 else CATALOGUE_PATH))
