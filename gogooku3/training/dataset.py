"""The training panel: ``features/features`` partitions as one dense (day, code, feature) array.

A walk-forward run reads a date range once into a :class:`Panel`: float32 features with NaN where a
value is missing, a (day, code) presence mask, the ``target_ret_{h}d`` targets (float64) and each code's
sector. Every model input is a view or a small gather of these arrays: the length-L window ending on
day t is ``x[t - L + 1 : t + 1]`` (a view by index arithmetic, never L materialised copies), and a
batch gathers one day's codes from it.

Memory: the arrays are allocated once at a capacity from the partitions' manifests (their row
counts) and filled day by day from each verified partition, column-projected; no frame of the whole
range ever exists. For the full market (4,000 codes x 1,223 days x 140 features) that is about
1223 * 4600 * 140 * 4 B = 3.2 GB at capacity, 2.9 GB of it used (``make bench`` measures the peak
RSS of a fresh process loading it: 3.6 GB on the synthetic full market).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

import numpy as np
import polars as pl

from gogooku3.calendar import trading_days
from gogooku3.redaction import library_logger

if TYPE_CHECKING:
    from gogooku3.lake import Lake

log = library_logger(__name__)
T = TypeVar("T")
R = TypeVar("R")

LAYER, DATASET = "features", "features"
#: Columns of a features partition that are neither features nor targets.
KEY_COLUMNS = ("Date", "Code", "Sector33Code", "MarketCode")
SEQ_LEN = 20
_READ_WORKERS = 8


class DatasetError(ValueError):
    """The requested training data cannot be assembled; the message names what is wrong."""


def target_column(h: int) -> str:
    return f"target_ret_{h}d"


def feature_columns(columns: Sequence[str]) -> tuple[str, ...]:
    """The features among a features partition's columns: neither a key nor a ``target_`` column."""
    return tuple(c for c in columns if c not in KEY_COLUMNS and not c.startswith("target_"))


@dataclass
class Panel:
    """Dense arrays over ``days`` (T) x ``codes`` (N); row t of every array is trading day ``days[t]``.

    ``x`` (T, N, F) float32 holds the features (NaN: missing or no row); ``present`` (T, N) is True
    where the partition of that day has a row for that code; ``targets`` (T, N, H) float64 the
    forward returns for ``horizons`` (NaN: unknown), the lake's values exactly (the metrics score
    against them; models learn a float32 transform of them); ``sector`` (N,) int32 the index of the code's
    latest Sector33Code in ``sectors`` (-1 if never given). ``run`` (T, N) int32 counts the
    consecutive present days ending at t, so "has a full window at t" is ``run[t] >= L``.
    """

    days: tuple[dt.date, ...]
    codes: tuple[str, ...]
    features: tuple[str, ...]
    horizons: tuple[int, ...]
    x: np.ndarray
    present: np.ndarray
    targets: np.ndarray
    sector: np.ndarray
    sectors: tuple[str, ...]
    #: SHA-256 over the read partitions' checksums: equal exactly when the data read is equal.
    fingerprint: str = ""

    def __post_init__(self) -> None:
        run = np.zeros(self.present.shape, dtype=np.int32)
        for t in range(len(self.days)):
            run[t] = np.where(self.present[t], (run[t - 1] if t else 0) + 1, 0)
        self.run = run

    @property
    def nbytes(self) -> int:
        return int(self.x.nbytes + self.present.nbytes + self.targets.nbytes + self.run.nbytes)

    def day_index(self, day: dt.date) -> int:
        return self.days.index(day)

    def feature_index(self, name: str) -> int:
        try:
            return self.features.index(name)
        except ValueError:
            raise DatasetError(
                f"feature {name!r} is not in the panel's {len(self.features)} features"
            ) from None

    def eligible(self, t: int, seq_len: int = SEQ_LEN) -> np.ndarray:
        """Code indices that are samples on day t: present on each of the ``seq_len`` days ending at t
        (a code with fewer than L valid days at t is not a sample on t)."""
        return np.flatnonzero(self.run[t] >= seq_len)

    def window(self, t: int, seq_len: int = SEQ_LEN) -> np.ndarray:
        """The (L, N, F) window ending on day t: a view of ``x``, no copy."""
        if t + 1 < seq_len:
            raise IndexError(f"day index {t} has fewer than {seq_len} days of history in the panel")
        return self.x[t + 1 - seq_len : t + 1]


def load_panel(
    lake: Lake,
    start: dt.date,
    end: dt.date,
    horizons: Sequence[int],
    *,
    features: Sequence[str] | None = None,
) -> Panel:
    """Read ``features/features`` for every JPX trading day in [start, end] into a :class:`Panel`.

    ``features`` (default: every column of the first partition that is neither a key nor a
    ``target_`` column) fixes the feature list. Raises :class:`DatasetError` for an empty range,
    a missing partition (naming every missing day), a horizon without its target column, or a
    partition whose columns drifted from the first one's; nothing is trained then.
    """
    if start > end:
        raise DatasetError(f"training range is empty: start {start} is after end {end}")
    days = trading_days(start, end)
    if not days:
        raise DatasetError(f"training range {start}..{end} holds no JPX trading day")
    present_days = set(lake.list_partitions(LAYER, DATASET))
    missing = [d for d in days if d not in present_days]
    if missing:
        shown = ", ".join(d.isoformat() for d in missing[:10])
        more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
        raise DatasetError(
            f"{LAYER}/{DATASET} in lake {lake.uri} is missing {len(missing)} of the {len(days)} trading days "
            f"of {start}..{end}: {shown}{more} (build those features first)"
        )
    manifests = [lake.read_manifest(LAYER, DATASET, d) for d in days]
    first_columns = manifests[0].column_names
    horizons = tuple(horizons)
    targets = [target_column(h) for h in horizons]
    absent = [c for c in targets if c not in first_columns]
    if absent:
        have = sorted(c for c in first_columns if c.startswith("target_ret_"))
        raise DatasetError(
            f"horizon(s) {', '.join(c.removeprefix('target_ret_').removesuffix('d') for c in absent)} have "
            f"no target column ({', '.join(absent)}) in {LAYER}/{DATASET} of {days[0]}; it has {have}"
        )
    if features is None:
        features = feature_columns(first_columns)
    features = tuple(features)
    if not features:
        raise DatasetError(f"{LAYER}/{DATASET} of {days[0]} has no feature column")
    # A target may also be asked for as a feature (the leakage canary's own test does): read it once.
    needed = tuple(dict.fromkeys(("Code", "Sector33Code", *features, *targets)))
    for m in manifests:
        have = set(m.column_names)
        drift = [c for c in needed if c not in have]
        if drift:
            raise DatasetError(
                f"schema drift: {LAYER}/{DATASET} of {m.date} lacks column(s) {drift} that {days[0]} has"
            )

    capacity = int(max(m.rows for m in manifests) * 1.2) + 64
    T, F, H = len(days), len(features), len(horizons)
    x = np.full((T, capacity, F), np.nan, dtype=np.float32)
    y = np.full((T, capacity, H), np.nan, dtype=np.float64)
    present = np.zeros((T, capacity), dtype=bool)
    code_pos: dict[str, int] = {}
    sector_of: dict[int, str] = {}

    def read(day: dt.date) -> pl.DataFrame:
        return lake.read_partition(LAYER, DATASET, day, columns=list(needed))

    # Partitions are decoded a few at a time (I/O overlaps) and scattered in day order, so code
    # positions are assigned deterministically by first appearance.
    with ThreadPoolExecutor(max_workers=_READ_WORKERS) as pool:
        for t, part in enumerate(_read_ahead(pool, read, days, 2 * _READ_WORKERS)):
            codes = part["Code"].cast(pl.Utf8).to_list()
            if len(set(codes)) != len(codes):
                raise DatasetError(f"{LAYER}/{DATASET} of {days[t]} has duplicate codes")
            for c in codes:
                if c not in code_pos:
                    code_pos[c] = len(code_pos)
            if len(code_pos) > x.shape[1]:
                x, y, present = _grow(x, y, present, int(len(code_pos) * 1.5))
            idx = np.fromiter((code_pos[c] for c in codes), dtype=np.int64, count=len(codes))
            # writable: one column without nulls comes back as a read-only view of Arrow memory
            values = part.select(pl.col(features).cast(pl.Float32)).to_numpy(writable=True)
            values[~np.isfinite(values)] = np.nan  # an inf from a ratio counts as missing, like a null
            x[t, idx] = values
            y[t, idx] = part.select(pl.col(targets).cast(pl.Float64)).to_numpy()
            present[t, idx] = True
            for i, s in zip(idx.tolist(), part["Sector33Code"].to_list(), strict=True):
                if s is not None:
                    sector_of[i] = str(s)
    n = len(code_pos)
    sectors = tuple(sorted(set(sector_of.values())))
    sector_index = {s: k for k, s in enumerate(sectors)}
    sector = np.full(n, -1, dtype=np.int32)
    for i, s in sector_of.items():
        sector[i] = sector_index[s]
    x = x[:, :n]
    panel = Panel(
        days=days,
        codes=tuple(code_pos),
        features=features,
        horizons=horizons,
        x=x,
        present=present[:, :n],
        targets=y[:, :n],
        sector=sector,
        sectors=sectors,
        fingerprint=hashlib.sha256("".join(m.checksum for m in manifests).encode()).hexdigest(),
    )
    log.info(
        "training panel %s..%s: %d days x %d codes x %d features (%.2f GB)",
        start,
        end,
        T,
        n,
        F,
        panel.nbytes / 1e9,
    )
    return panel


def _read_ahead(
    pool: ThreadPoolExecutor, fn: Callable[[T], R], items: Sequence[T], depth: int
) -> Iterator[R]:
    """``fn`` over ``items`` in order, at most ``depth`` results decoded ahead of the consumer.

    ``pool.map`` would submit every item at once and hold every decoded partition until its turn:
    the whole range as frames (~6 GB for the full market), the very thing the panel avoids.
    """
    pending: deque[Future[R]] = deque()
    for item in items:
        pending.append(pool.submit(fn, item))
        if len(pending) >= depth:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def _grow(
    x: np.ndarray, y: np.ndarray, present: np.ndarray, capacity: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    def grown(a: np.ndarray, fill: float | bool) -> np.ndarray:
        out = np.full((a.shape[0], capacity, *a.shape[2:]), fill, dtype=a.dtype)
        out[:, : a.shape[1]] = a
        return out

    return grown(x, np.nan), grown(y, np.nan), grown(present, False)
