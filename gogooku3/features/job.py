"""The feature build as a job: from settings and a lake URI to written partitions and a one-line
summary, exactly as ``gogooku3 features build`` (gogooku3/cli.py) and the in-process fallback task of
``features_daily`` run it."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from gogooku3.features.build import ENGINES, build_features_to_lake

if TYPE_CHECKING:
    from gogooku3.config import Settings
    from gogooku3.lake import Manifest


def run_build(
    start: dt.date, end: dt.date, engine: str, lake_uri: str | None, settings: Settings
) -> list[Manifest]:
    """Open the lake (``lake_uri``, else ``settings.lake_uri``; S3 credentials from ``settings.s3``) and
    write ``features/features/date=D/`` for every daily_quotes date in [start, end] on ``engine``.

    The GPU engine's RMM pool size comes from ``settings.rmm_pool_size`` (``RMM_POOL_SIZE``), else the
    device. Raises ValueError for a bad range or engine, GpuUnavailableError for engine gpu without
    RAPIDS/GPU, MissingPartitionError when no daily_quotes partition is in range.
    """
    from gogooku3.exchange_calendar import open_lake_following_exchange

    if start > end:
        raise ValueError(f"--start {start} is after --end {end}")
    if engine not in ENGINES:
        raise ValueError(f"--engine {engine!r}: expected one of {', '.join(ENGINES)}")
    lake = open_lake_following_exchange(lake_uri or settings.lake_uri, settings.s3)
    return build_features_to_lake(lake, start, end, engine, rmm_pool_size=settings.rmm_pool_size)  # type: ignore[arg-type]


def summarize(manifests: list[Manifest]) -> str:
    """One line for the terminal: partitions and rows written, over which dates."""
    if not manifests:
        return "features: no trading day in range, nothing written"
    rows = sum(m.rows for m in manifests)
    return (
        f"features: wrote {len(manifests)} partitions {manifests[0].date}..{manifests[-1].date} ({rows} rows)"
    )
