"""Realistic feature-build inputs from the synthetic market (tests and benchmarks)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING

import polars as pl

from gogooku3.market.market import DERIVED_DATASETS

if TYPE_CHECKING:
    from gogooku3.lake import Lake


@dataclass(frozen=True)
class MarketInputs:
    """The canonical lake frames :func:`gogooku3.features.build_features` takes."""

    daily_quotes: pl.DataFrame
    listed_info: pl.DataFrame
    topix: pl.DataFrame
    statements: pl.DataFrame
    flows: pl.DataFrame | None
    indices: pl.DataFrame
    short_selling: pl.DataFrame
    weekly_margin_interest: pl.DataFrame
    earnings_calendar: pl.DataFrame
    dividends: pl.DataFrame
    futures: pl.DataFrame
    index_option: pl.DataFrame
    daily_margin_interest: pl.DataFrame
    short_selling_positions: pl.DataFrame

    def write_to(self, lake: Lake) -> None:
        """Write every input as the lake partitions a build reads (raw/..., interim/trades_spec_daily)."""
        from gogooku3.jquants.datasets import get_dataset

        tables = {
            ("raw", "daily_quotes", "Date"): self.daily_quotes,
            ("raw", "topix", "Date"): self.topix,
            ("raw", "listed_info", "Date"): self.listed_info,
            ("raw", "statements", "DisclosedDate"): self.statements,
            ("interim", "trades_spec_daily", "Date"): self.flows,
            **{("raw", name, get_dataset(name).partition_by): getattr(self, name) for name in MARKET_WIDE},
        }
        for (layer, dataset, column), table in tables.items():
            if table is None:
                continue
            for (day,), part in table.partition_by(column, as_dict=True).items():
                lake.write_partition(layer, dataset, day, part, source="test")

    def kwargs(self) -> dict[str, pl.DataFrame | None]:
        return {
            "listed_info": self.listed_info,
            "topix": self.topix,
            "statements": self.statements,
            "flows": self.flows,
            **{name: getattr(self, name) for name in MARKET_WIDE},
        }


#: The market-wide datasets :func:`gogooku3.features.build_features` takes as keyword arguments:
#: exactly the datasets the synthetic market derives from its prices and statements.
MARKET_WIDE = DERIVED_DATASETS


def market_inputs(
    n_codes: int,
    start: dt.date,
    end: dt.date,
    *,
    seed: int = 7,
    with_flows: bool = True,
    listed_every: int = 20,
    signal: float = 1.0,
) -> MarketInputs:
    """All inputs over [start, end] from ``generate_market`` (``signal``: the planted signal's
    strength); listed_info sampled every ``listed_every`` days."""
    from gogooku3.market import MarketConfig, generate_market

    m = generate_market(MarketConfig(seed=seed, n_codes=n_codes, start=start, end=end, signal=signal))
    days = m.trading_days
    snapshots = [*days[::listed_every], days[-1]]
    listed = pl.concat([m.listed_info(d) for d in snapshots]).unique(["Date", "Code"]).sort("Date", "Code")
    flows = None
    if with_flows:
        from gogooku3.flows import expand_trades_spec

        flows = expand_trades_spec(m.trades_spec(), days[0], days[-1])
    return MarketInputs(
        daily_quotes=m.daily_panel(),
        listed_info=listed,
        topix=m.topix(),
        statements=m.statements(),
        flows=flows,
        **{name: m.derived(name) for name in MARKET_WIDE},
    )
