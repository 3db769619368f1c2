"""Targets: forward returns and up/down labels, computed in a separate step from the features.

These are the only columns that read later rows; they carry the ``target_`` prefix and no feature
reads them (the catalogue rejects ``target_`` inputs). ``target_ret_{h}d`` is
``px_close[t+h] / px_close[t] - 1`` of the same code (split-adjusted close), null when the code
has no row h trading days later (the future is not known yet, or it was delisted), clipped to
[-1, 10] and then to +-5 sigma of that date's cross-section. ``target_up_{h}d`` is 1 when the
unclipped forward return is > 0, 0 when <= 0.

Two steps, because they need different row orders: :func:`forward_returns` on the panel sorted by
(Code, Date), :func:`finish_targets` (the per-day clip) on the output rows after the build's one
reorder; :func:`add_targets` runs both.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

RET_HORIZONS = (1, 2, 3, 5, 10, 20)
UP_HORIZONS = (1, 5, 10)
CLIP_SIGMA = 5.0
RET_BOUNDS = (-1.0, 10.0)


@dataclass(frozen=True)
class Target:
    name: str
    horizon: int
    op: str
    dtype: str
    description: str


TARGETS: tuple[Target, ...] = tuple(
    Target(
        f"target_ret_{h}d",
        h,
        "forward_return",
        "Float64",
        f"forward {h}-trading-day return of the adjusted close, clipped to [-1, 10] and +-5 sigma per date",
    )
    for h in RET_HORIZONS
) + tuple(
    Target(f"target_up_{h}d", h, "forward_up", "Int8", f"1 if the forward {h}-day return is > 0 else 0")
    for h in UP_HORIZONS
)
TARGET_NAMES = tuple(t.name for t in TARGETS)


#: The forward-return columns :func:`forward_returns` adds and :func:`finish_targets` consumes.
FORWARD_COLUMNS = tuple(f"_fwd_{h}" for h in sorted({*RET_HORIZONS, *UP_HORIZONS}))


def _forward_return(h: int, by: str) -> pl.Expr:
    # Rows are sorted by (Code, Date), each code's rows contiguous: the row h positions ahead is
    # the same code's row h trading days later exactly when it carries the same code, else the
    # code has fewer than h rows left (future unknown, or delisted) and the target is null.
    fwd = pl.col("px_close").shift(-h) / pl.col("px_close") - 1.0
    return pl.when((pl.col(by).shift(-h) == pl.col(by)) & fwd.is_finite()).then(fwd)


def _require_panel(panel: pl.DataFrame, who: str) -> None:
    missing = [c for c in ("Code", "Date", "px_close") if c not in panel.columns]
    if missing:
        raise ValueError(f"{who}: panel is missing {missing}")


def forward_returns(panel: pl.DataFrame) -> pl.DataFrame:
    """The raw forward returns (:data:`FORWARD_COLUMNS`) of a panel sorted by (Code, Date), row for row.

    The first of the two steps: it needs each code's rows contiguous; :func:`finish_targets`
    then needs only each day's rows, in any order.
    """
    _require_panel(panel, "forward_returns")
    by = "code_id" if "code_id" in panel.columns else "Code"
    return panel.select(_forward_return(int(c.removeprefix("_fwd_")), by).alias(c) for c in FORWARD_COLUMNS)


def finish_targets(frame: pl.DataFrame) -> pl.DataFrame:
    """Replace :data:`FORWARD_COLUMNS` of ``frame`` (any row order) with the ``target_*`` columns.

    Each day's clip statistics use that day's rows only, so the rows of a day must all be present.
    """
    # the [-1, 10] clip materialised first, so the day statistics and the final clip read it once
    bounded = frame.with_columns(pl.col(f"_fwd_{h}").clip(*RET_BOUNDS).alias(f"_b_{h}") for h in RET_HORIZONS)
    exprs = []
    for h in RET_HORIZONS:
        raw = pl.col(f"_b_{h}")
        mu, sd = raw.mean().over("Date"), raw.std().over("Date")
        exprs.append(raw.clip(mu - CLIP_SIGMA * sd, mu + CLIP_SIGMA * sd).alias(f"target_ret_{h}d"))
    for h in UP_HORIZONS:
        exprs.append((pl.col(f"_fwd_{h}") > 0).cast(pl.Int8).alias(f"target_up_{h}d"))
    return bounded.with_columns(exprs).drop(*FORWARD_COLUMNS, *(f"_b_{h}" for h in RET_HORIZONS))


def add_targets(panel: pl.DataFrame, *, presorted: bool = False) -> pl.DataFrame:
    """Append the target columns to a panel with Code, Date, px_close (returned sorted by Code, Date).

    ``presorted=True`` promises the rows are already sorted by (Code, Date) (the prepared panel
    is) and keeps their order without sorting again.
    """
    _require_panel(panel, "add_targets")  # before the sort, which would fail less clearly
    ordered = panel if presorted else panel.sort("Code", "Date")
    return finish_targets(ordered.hstack(forward_returns(ordered)))
