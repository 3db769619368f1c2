"""Honest judges of a walk-forward run: the planted-alpha oracle and the leakage canary.

* Oracle: the synthetic market knows the expected next-day return it planted
  (:meth:`gogooku3.market.Market.planted`). Its RankIC against ``target_ret_1d`` on the same test
  days is the best any model can reach on average; a model's RankIC@1d as a fraction of it says how
  much of the learnable signal the model found.
* Leakage canary: on a market without a planted signal (``signal=0``) nothing is learnable, so any
  model whose out-of-sample mean RankIC@1d is further from 0 than ``max(0.02, 4 standard errors)``
  has seen the future somewhere (a target used as a feature, a normaliser fit on test days, ...).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import polars as pl

if TYPE_CHECKING:
    from gogooku3.market import Market

CANARY_FLOOR = 0.02
CANARY_SE = 4.0


def oracle_frame(market: Market, targets: pl.DataFrame, horizon: int = 1) -> pl.DataFrame:
    """(Date, Code, planted_alpha, target_ret_{h}d) on the targets' days and codes."""
    planted = market.planted().select("Date", "Code", "planted_alpha")
    target = f"target_ret_{horizon}d"
    return targets.select("Date", "Code", target).join(planted, on=["Date", "Code"], how="inner")


def oracle_rank_ic(market: Market, targets: pl.DataFrame, horizon: int = 1) -> tuple[float, float, int]:
    """(mean daily RankIC, standard error, days) of the planted alpha on the targets' (Date, Code)."""
    from gogooku3.training.metrics import mean_rank_ic

    return mean_rank_ic(oracle_frame(market, targets, horizon), "planted_alpha", f"target_ret_{horizon}d")


def oracle_fractions(oos: dict, oracle_ic: float, horizon: int = 1) -> dict[str, float]:
    """Each model's out-of-sample mean RankIC at ``horizon`` divided by the oracle's."""
    return {model: m[f"{horizon}d"]["rank_ic"] / oracle_ic for model, m in oos.items()}


def leakage_canary(oos: dict, horizon: int = 1) -> list[str]:
    """The models whose out-of-sample mean RankIC at ``horizon`` is too far from 0 for a market with
    no signal, each with its figures; empty when the canary stays quiet."""
    fired = []
    for model, by_h in sorted(oos.items()):
        m = by_h[f"{horizon}d"]
        ic, se = m["rank_ic"], m["rank_ic_se"]
        bound = max(CANARY_FLOOR, CANARY_SE * se) if se is not None and math.isfinite(se) else CANARY_FLOOR
        if ic is None or not math.isfinite(ic) or abs(ic) > bound:
            fired.append(f"{model}: RankIC@{horizon}d {ic} beyond +-{bound:.4f} (4 SE {se})")
    return fired
