"""The feature catalogue's vocabulary: a feature is data (inputs, op, window, params), not code.

Every feature is one :class:`Feature`: a name, an operation from :data:`OPS`, its input columns
(base columns from :mod:`gogooku3.features.prepare` or earlier features), an optional window and
parameters. Both engines (:mod:`gogooku3.features.engine_cpu` for Polars,
:mod:`gogooku3.features.engine_gpu` for cuDF) compile the same list, so a feature is defined once.

The ops themselves are one table, :data:`gogooku3.features.ops.OPERATIONS`: per op its grouping,
arity, meaning, look-back rule (what :attr:`Feature.lookback` and the catalogue's ``min_history``
read) and its Polars and cuDF implementations, which the engines look up. :data:`OPS` is a
read-only view of it as op -> (grouping, arity, meaning).

Groupings (implied by the op):

* ``code`` - per-code time series over rows sorted by (Code, Date). Window ops only look back
  (``shift``/``pct_change``/``diff`` by ``window`` rows, trailing rolling windows, EMA scans), so
  no feature ever reads a later row. A window result is null until the code has ``window`` rows
  (``min_samples = window``); that is what the maturity flags describe.
* ``row`` - element-wise arithmetic on the same row.
* ``date`` - per-date cross-section (z-score, rank, winsorisation): only that day's rows.
* ``date_sector`` - per (Date, Sector33Code) cross-section.

Two phases (:func:`split_phases`): the **series** phase (``code`` and ``row`` ops) runs over rows
sorted by (Code, Date), where each code's history is contiguous; the **cross-section** phase
(``date``/``date_sector`` ops and any ``row`` op reading their results) runs after one reorder to
day order (Date, Sector33Code, Code), where each day's and each (day, sector)'s cross-section is
contiguous, and only on the rows being output. A per-code time series of a cross-sectional
statistic would need a second full-history reorder, so the catalogue rejects it
(:class:`CatalogueError`).

Shared null rules (the GPU parity test relies on them): arithmetic propagates nulls; any
non-finite result (x/0, log of <= 0, z-score of a constant cross-section) becomes null; flags
are ``Int8`` 0/1 and null where an input is null.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Literal

import polars as pl

from gogooku3.features.ops import COMPARE_TOL, OPERATIONS, Grouping, Op

__all__ = [
    "COMPARE_TOL",
    "GROUPS",
    "OPS",
    "CatalogueError",
    "Feature",
    "Grouping",
    "Phase",
    "phase_of",
    "split_phases",
    "validate",
]

Phase = Literal["series", "cross_section"]


class _OpsView(Mapping[str, tuple[Grouping, int, str]]):
    """Read-only view of :data:`~gogooku3.features.ops.OPERATIONS` as op -> (grouping, arity, meaning)."""

    def __getitem__(self, op: str) -> tuple[Grouping, int, str]:
        o = OPERATIONS[op]
        return o.grouping, o.arity, o.meaning

    def __iter__(self) -> Iterator[str]:
        return iter(OPERATIONS)

    def __len__(self) -> int:
        return len(OPERATIONS)


#: op -> (grouping, arity or -1 for "one or more", meaning), read from the operation table. The
#: meaning is the contract both engines implement; ``w`` is the feature's window, ``x, y`` its inputs.
OPS: Mapping[str, tuple[Grouping, int, str]] = _OpsView()


GROUPS = (
    "returns",
    "ma",
    "rsi",
    "macd",
    "bollinger",
    "volatility",
    "volume",
    "flow",
    "market",
    "fundamentals",
    "margin",
    "short_selling",
    "earnings",
    "dividends",
    "futures",
    "options",
    "sector_index",
    "regime",
    "peers",
    "cross_sectional",
    "sector_relative",
    "maturity",
)


@dataclass(frozen=True)
class Feature:
    """One catalogue entry. ``output=False`` marks an intermediate that is computed but not kept."""

    name: str
    op: str
    inputs: tuple[str, ...]
    group: str
    description: str
    window: int | None = None
    params: dict[str, float] = field(default_factory=dict, hash=False, compare=True)
    output: bool = True

    @property
    def operation(self) -> Op:
        """The op's entry in :data:`~gogooku3.features.ops.OPERATIONS` (``KeyError`` if unknown)."""
        return OPERATIONS[self.op]

    @property
    def grouping(self) -> Grouping:
        return self.operation.grouping

    @property
    def dtype(self) -> str:
        """Polars dtype name of the column as built and stored: ``Int8`` for flags, ``Float32``
        otherwise. The engines compute in Float64 (rolling sums and EMAs need its precision) and
        round each output once, at the end; the model reads float32."""
        return "Int8" if self.operation.flag else "Float32"

    @property
    def stored(self) -> pl.Expr:
        """This feature's column cast to :attr:`dtype`: what an engine returns."""
        return pl.col(self.name).cast(getattr(pl, self.dtype))

    @property
    def lookback(self) -> int:
        """Rows of the code's own history this op reads back (0 for non time-series ops), by the
        op's :class:`~gogooku3.features.ops.Lookback` rule."""
        return self.operation.lookback.rows_read(self.window)

    def param(self, key: str, default: float | None = None) -> float:
        if key in self.params:
            return float(self.params[key])
        if default is None:
            raise KeyError(f"feature {self.name!r} (op {self.op}) needs params[{key!r}]")
        return default

    def ema_alpha(self) -> float:
        """Smoothing factor of an ``ema`` feature: params alpha, else 2 / (window + 1) (span)."""
        if "alpha" in self.params:
            return float(self.params["alpha"])
        if not self.window:
            raise ValueError(f"ema feature {self.name!r} needs a window (span) or params alpha")
        return 2.0 / (self.window + 1.0)


class CatalogueError(ValueError):
    """The catalogue is inconsistent (unknown op or input, duplicate name, cycle, bad arity)."""


def validate(features: tuple[Feature, ...], base_columns: frozenset[str]) -> list[list[Feature]]:
    """Check the catalogue and return it in dependency layers (each layer only reads earlier ones).

    Raises :class:`CatalogueError` naming the offending feature.
    """
    by_name: dict[str, Feature] = {}
    for f in features:
        if f.op not in OPERATIONS:
            raise CatalogueError(f"feature {f.name!r}: unknown op {f.op!r} (known: {', '.join(OPERATIONS)})")
        if f.name in by_name or f.name in base_columns:
            raise CatalogueError(f"feature {f.name!r} is defined twice (or shadows a base column)")
        if f.group not in GROUPS:
            raise CatalogueError(f"feature {f.name!r}: unknown group {f.group!r}")
        if f.name.startswith("target_"):
            raise CatalogueError(f"feature {f.name!r}: the target_ prefix is reserved for targets")
        arity = f.operation.arity
        if arity > 0 and len(f.inputs) != arity:
            raise CatalogueError(f"feature {f.name!r}: op {f.op} takes {arity} input(s), got {len(f.inputs)}")
        if arity < 0 and not f.inputs:
            raise CatalogueError(f"feature {f.name!r}: op {f.op} needs at least one input")
        if f.operation.lookback.window_required and not f.window:
            raise CatalogueError(f"feature {f.name!r}: op {f.op} needs a window")
        by_name[f.name] = f
    depth: dict[str, int] = {}

    def _depth(name: str, stack: tuple[str, ...]) -> int:
        if name in base_columns:
            return -1
        if name in stack:
            raise CatalogueError(f"feature cycle: {' -> '.join((*stack, name))}")
        if name not in by_name:
            raise CatalogueError(f"feature {stack[-1]!r} reads unknown column {name!r}")
        if name not in depth:
            depth[name] = 1 + max(_depth(i, (*stack, name)) for i in by_name[name].inputs)
        return depth[name]

    for f in features:
        _depth(f.name, ())
    layers: list[list[Feature]] = [[] for _ in range(max(depth.values(), default=-1) + 1)]
    for f in features:
        layers[depth[f.name]].append(f)
    phase_of(layers)  # rejects a time series over a cross-sectional result
    return layers


def phase_of(layers: list[list[Feature]]) -> dict[str, Phase]:
    """Feature name -> the phase it is computed in (see the module docstring).

    A ``date``/``date_sector`` op is ``cross_section``; a ``row`` op takes the latest phase of its
    inputs; a ``code`` op must be ``series``. Raises :class:`CatalogueError` naming a ``code`` op
    that reads a cross-section result.
    """
    phase: dict[str, Phase] = {}
    for layer in layers:
        for f in layer:
            reads_cross = [c for c in f.inputs if phase.get(c) == "cross_section"]
            if f.grouping == "code" and reads_cross:
                raise CatalogueError(
                    f"feature {f.name!r}: op {f.op} is a per-code time series but reads the "
                    f"cross-section result(s) {reads_cross}; cross-sections are computed after the "
                    "per-code series (on the output rows only), so build the series first and take "
                    "the cross-section of it"
                )
            cross = f.grouping in ("date", "date_sector") or bool(reads_cross)
            phase[f.name] = "cross_section" if cross else "series"
    return phase


def split_phases(layers: list[list[Feature]]) -> tuple[list[list[Feature]], list[list[Feature]]]:
    """``layers`` as (series layers, cross-section layers), each still in dependency order."""
    phase = phase_of(layers)
    series = [[f for f in layer if phase[f.name] == "series"] for layer in layers]
    cross = [[f for f in layer if phase[f.name] == "cross_section"] for layer in layers]
    return [layer for layer in series if layer], [layer for layer in cross if layer]
