"""The trades_spec expansion as a job: from settings and a lake URI to written partitions and a one-line
summary, as ``gogooku3 trades-spec expand`` (gogooku3/cli.py) runs it."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from gogooku3.flows.io import expand_to_lake

if TYPE_CHECKING:
    from gogooku3.config import Settings
    from gogooku3.lake import Manifest


def run_expansion(start: dt.date, end: dt.date, lake_uri: str | None, settings: Settings) -> list[Manifest]:
    """Open the lake (``lake_uri``, else ``settings.lake_uri``; S3 credentials from ``settings.s3``)
    and write ``interim/trades_spec_daily`` for the trading days in [start, end]."""
    from gogooku3.exchange_calendar import open_lake_following_exchange

    if start > end:
        raise ValueError(f"--start {start} is after --end {end}")
    lake = open_lake_following_exchange(lake_uri or settings.lake_uri, settings.s3)
    return expand_to_lake(lake, start, end)


def summarize(manifests: list[Manifest]) -> str:
    """One line for the terminal: how many partitions and rows were written, over which dates."""
    if not manifests:
        return "trades_spec_daily: no trading day in range, nothing written"
    rows = sum(m.rows for m in manifests)
    return (
        f"trades_spec_daily: wrote {len(manifests)} partitions {manifests[0].date}..{manifests[-1].date} "
        f"({rows} rows)"
    )
