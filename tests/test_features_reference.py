"""Every op of the feature compiler against a naive reference, over the whole catalogue, on both engines.

The reference below is written from the op contract (:data:`gogooku3.features.spec.OPS` and the
rules in the :mod:`gogooku3.features.spec` docstring: trailing windows with ``min_samples =
window``, ``ddof=1``, nulls propagate, any non-finite result is null, flags are Int8 and null
where an input is null), not from the engines: plain Python loops over each code's rows in date
order (time series), over each day's and each (day, Sector33Code)'s rows (cross-sections) and
row by row (row ops). It never calls an engine's expressions or helpers; it reads every
parameter (window, inputs, k, alpha, value, lo, hi) from the catalogue entry. Nulls are NaN
inside the reference, which is exactly the spec's rule: whatever is not a finite number is null.

Checks:

* ``test_feature_matches_reference[engine-feature]``: every catalogue feature, intermediates
  included, on the CPU engine and on the GPU engine (through the cuDF stand-in of
  ``test_features_gpu_logic``). Each feature is evaluated from *that engine's* values of its
  inputs, so each op is checked on its own: a fault shows at the feature that has it, not smeared
  over everything downstream, and IEEE-exact ops can be compared bit for bit (see ``TOLERANCE``).
* ``test_probe_matches_reference``: the same for probes of what the catalogue does not reach:
  ops it does not use (``clip``, ``log1p_abs``), windows over interior nulls, constant windows and
  cross-sections (std exactly 0), ties in ranks, a winsorisation that clips, a day with one value.
* ``test_described_parameters``: features whose description states its numbers (Bollinger 20
  days 2 sigma, RSI(14) Wilder, MACD 12/26/9, annualisation by sqrt 252, ...) from the textbook
  definition with those numbers written here. The op reference takes ``k`` from the catalogue, so
  by construction it cannot notice a wrong ``k`` *in* the catalogue; this does.

A catalogue op without a reference fails its cases by name (``REFERENCE`` has one entry per op),
and ``test_every_op_has_a_reference_and_is_exercised`` fails for an op of the spec that no
catalogue feature or probe uses.

Where the spec is loose or silent, the reference follows the op's own meaning in ``OPS`` and
says so where it decides: a lag ``x[t-w]`` is null on a code's first ``w`` rows (so until it has
``w + 1`` rows, where the module docstring's "null until the code has window rows" holds only for
the rolling ops); an EMA starts at the code's first non-null value, with no minimum count
(``min_history`` calls it mature after ``w`` rows); a winsorisation of a day with fewer than two
values leaves x as it is; sector statistics are null on a row without a sector; a comparison
reads at most two inputs (``OPS`` gives it arity -1 and the engines ignore a third).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import reduce

import cudf_standin
import numpy as np
import polars as pl
import pytest

from gogooku3.features import engine_gpu
from gogooku3.features.catalogue import FEATURES, LAYERS
from gogooku3.features.engine_cpu import compute_features
from gogooku3.features.prepare import BASE_COLUMNS, prepare_panel
from gogooku3.features.spec import COMPARE_TOL, OPS, Feature, validate
from gogooku3.features.testing import market_inputs

# The stand-in's rolling std (numpy nanstd) warns on the windows it leaves null anyway.
pytestmark = pytest.mark.filterwarnings("ignore:Degrees of freedom <= 0:RuntimeWarning")

# Two years: the year-earlier statement fields (stmt_prev_*) need a first year, and the longest
# window (EMA200 maturity, 60-day betas) has room to run for months.
START, END = dt.date(2021, 1, 4), dt.date(2022, 12, 30)
N_CODES = 30
NULL = math.nan

# ======================================================================== the reference


@dataclass(frozen=True)
class Rows:
    """The panel's row structure as the reference sees it (rows in the panel's (Code, Date) order)."""

    code: tuple[str, ...]
    day: tuple[int, ...]  # days since 1970-01-01
    segments: tuple[range, ...]  # each code's rows, in date order
    by_day: tuple[tuple[int, ...], ...]  # each day's rows
    by_day_sector: tuple[tuple[int, ...], ...]  # each (day, Sector33Code)'s rows; no sector: none
    no_sector: tuple[int, ...]  # rows without a Sector33Code

    @classmethod
    def of(cls, panel: pl.DataFrame) -> Rows:
        code = tuple(panel.get_column("Code").to_list())
        day = tuple(panel.get_column("Date").cast(pl.Int32).to_list())
        sector = panel.get_column("Sector33Code").to_list()
        starts = [i for i in range(len(code)) if i == 0 or code[i] != code[i - 1]]
        segments = tuple(range(a, b) for a, b in zip(starts, [*starts[1:], len(code)], strict=True))
        assert len({code[s[0]] for s in segments}) == len(segments), "each code's rows must be contiguous"
        assert all(day[i - 1] < day[i] for s in segments for i in s[1:]), "dates must increase per code"
        days: dict[int, list[int]] = {}
        cells: dict[tuple[int, str], list[int]] = {}
        for i, (d, s) in enumerate(zip(day, sector, strict=True)):
            days.setdefault(d, []).append(i)
            if s is not None:
                cells.setdefault((d, s), []).append(i)
        return cls(
            code=code,
            day=day,
            segments=segments,
            by_day=tuple(tuple(v) for v in days.values()),
            by_day_sector=tuple(tuple(v) for v in cells.values()),
            no_sector=tuple(i for i, s in enumerate(sector) if s is None),
        )

    def nulls(self) -> np.ndarray:
        return np.full(len(self.code), NULL)


def _num(v: float) -> float:
    """The spec's shared rule: any non-finite result (x/0, inf - inf, ...) is null."""
    return v if math.isfinite(v) else NULL


def _quot(a: float, b: float) -> float:
    # Python raises on x/0.0 where IEEE gives inf/NaN; both are "non-finite -> null".
    return NULL if b == 0 or math.isnan(b) else _num(a / b)


def _present(vs: Iterable[float]) -> list[float]:
    return [v for v in vs if not math.isnan(v)]


def _mean(vs: Sequence[float]) -> float:
    # A constant sample's mean is that constant exactly; a rounded sum / n can miss it by an ulp
    # and turn a constant window's "std 0 -> null" into noise over noise.
    if all(v == vs[0] for v in vs):
        return vs[0]
    return math.fsum(vs) / len(vs)


def _std(vs: Sequence[float]) -> float:
    """Sample standard deviation (ddof=1), two-pass; null for fewer than 2 values, 0 if constant."""
    if len(vs) < 2:
        return NULL
    m = _mean(vs)
    return math.sqrt(math.fsum((v - m) ** 2 for v in vs) / (len(vs) - 1))


# ------------------------------------------------------------------ primitives (also used by the pins)


def ts_lag(x: np.ndarray, w: int, rows: Rows, combine: Callable[[float, float], float]) -> np.ndarray:
    """``combine(x[t], x[t-w])`` per code; null on a code's first ``w`` rows (nothing w rows back)."""
    out = rows.nulls()
    for seg in rows.segments:
        for k in range(w, len(seg)):
            out[seg[k]] = combine(x[seg[k]], x[seg[k - w]])
    return out


def ts_window(x: np.ndarray, w: int, rows: Rows, stat: Callable[[list[float]], float]) -> np.ndarray:
    """``stat`` of the code's rows t-w+1..t; null until the code has w rows or if any of them is null."""
    out = rows.nulls()
    for seg in rows.segments:
        for k in range(w - 1, len(seg)):
            window = [x[i] for i in seg[k - w + 1 : k + 1]]
            if len(_present(window)) == w:  # min_samples = window
                out[seg[k]] = _num(stat(window))
    return out


def ts_ema(x: np.ndarray, alpha: float, rows: Rows) -> np.ndarray:
    """y = a*x + (1-a)*y_prev per code from its first non-null value (adjust=False); a null input
    gives null and leaves y as it was."""
    out = rows.nulls()
    for seg in rows.segments:
        y: float | None = None
        for i in seg:
            if math.isnan(x[i]):
                continue
            y = x[i] if y is None else alpha * x[i] + (1.0 - alpha) * y
            out[i] = y
    return out


def row_map(fn: Callable[..., float], cols: Sequence[np.ndarray]) -> np.ndarray:
    # Python floats: the reference is plain scalar arithmetic, not NumPy's (whose ufuncs may differ)
    return np.array([fn(*vals) for vals in zip(*(c.tolist() for c in cols), strict=True)], dtype=float)


def strict(fn: Callable[..., float]) -> Callable[..., float]:
    """Null in, null out: the row op's result is null where any input is null."""
    return lambda *vs: NULL if any(math.isnan(v) for v in vs) else _num(fn(*vs))


def flag(cond: Callable[..., bool]) -> Callable[..., float]:
    return lambda *vs: NULL if any(math.isnan(v) for v in vs) else float(cond(*vs))


def cs_apply(
    x: np.ndarray, groups: Iterable[Sequence[int]], rows: Rows, fn: Callable[[float, list[float]], float]
) -> np.ndarray:
    """``fn(x_i, the group's non-null values)`` for each non-null x_i; null x stays null."""
    out = rows.nulls()
    for g in groups:
        vals = _present(x[i] for i in g)
        for i in g:
            if not math.isnan(x[i]):
                out[i] = fn(x[i], vals)
    return out


def z_score(v: float, vals: list[float]) -> float:
    return _quot(v - _mean(vals), _std(vals))  # std 0 (constant) or undefined (one value) -> null


def pct_rank(v: float, vals: list[float]) -> float:
    """Average rank (ties share the mean of their positions, 1 = smallest) / non-null count."""
    below = sum(u < v for u in vals)
    equal = sum(u == v for u in vals)
    return (below + (equal + 1) / 2) / len(vals)


def winsor(k: float) -> Callable[[float, list[float]], float]:
    def fn(v: float, vals: list[float]) -> float:
        sd = _std(vals)
        if math.isnan(sd):
            # Fewer than two values: no spread to clip to. The spec does not say; both engines
            # pass x through (their bounds are null and a comparison with null never clips).
            return v
        m = _mean(vals)
        hi, lo = m + k * sd, m - k * sd
        return hi if v > hi else lo if v < lo else v

    return fn


def demean(v: float, vals: list[float]) -> float:
    return v - _mean(vals)


def sector_apply(x: np.ndarray, rows: Rows, fn: Callable[[float, list[float]], float]) -> np.ndarray:
    # rows without a sector have no "same sector" to compare with: null (engines agree; the
    # spec's meaning strings do not say)
    return cs_apply(x, rows.by_day_sector, rows, fn)


# ------------------------------------------------------------------ the op table

RefFn = Callable[[Feature, list[np.ndarray], Rows], np.ndarray]


def _w(f: Feature) -> int:
    assert f.window and f.window > 0, f"{f.name}: op {f.op} needs a positive window"
    return f.window


def _p(f: Feature, key: str) -> float:
    assert key in f.params, f"{f.name}: op {f.op} needs params[{key!r}]"
    return float(f.params[key])


def _alpha(f: Feature) -> float:
    # params alpha, else the span's 2 / (w + 1)
    return _p(f, "alpha") if "alpha" in f.params else 2.0 / (_w(f) + 1.0)


def _cmp(test: Callable[[float, float, float], bool]) -> RefFn:
    """x against y (the second input, else params value) with the relative tolerance of the spec."""

    def ref(f: Feature, cols: list[np.ndarray], rows: Rows) -> np.ndarray:
        assert len(cols) in (1, 2), f"{f.name}: a comparison reads x and at most one y, got {f.inputs}"
        assert len(cols) == 2 or "value" in f.params, f"{f.name}: compare x with an input or params value"
        y = cols[1] if len(cols) == 2 else np.full(len(rows.code), _p(f, "value"))
        return row_map(flag(lambda a, b: test(a, b, abs(b) * COMPARE_TOL)), [cols[0], y])

    return ref


def _ref_days_since(f: Feature, cols: list[np.ndarray], rows: Rows) -> np.ndarray:
    return row_map(strict(lambda today, then: today - then), [np.array(rows.day, dtype=float), cols[0]])


def _ref_minmax(pick: Callable[..., float]) -> RefFn:
    return lambda f, c, r: row_map(strict(lambda *vs: pick(vs)), c)


REFERENCE: dict[str, RefFn] = {
    # per-code time series
    "shift": lambda f, c, r: ts_lag(c[0], _w(f), r, lambda now, then: then),
    "pct_change": lambda f, c, r: ts_lag(c[0], _w(f), r, lambda now, then: _quot(now, then) - 1.0),
    "diff": lambda f, c, r: ts_lag(c[0], _w(f), r, lambda now, then: _num(now - then)),
    "rmean": lambda f, c, r: ts_window(c[0], _w(f), r, _mean),
    "rstd": lambda f, c, r: ts_window(c[0], _w(f), r, _std),
    "rsum": lambda f, c, r: ts_window(c[0], _w(f), r, math.fsum),
    "ema": lambda f, c, r: ts_ema(c[0], _alpha(f), r),
    # row by row
    "copy": lambda f, c, r: c[0].copy(),
    "add": lambda f, c, r: row_map(strict(lambda a, b: a + b), c),
    "sub": lambda f, c, r: row_map(strict(lambda a, b: a - b), c),
    "mul": lambda f, c, r: row_map(strict(lambda *vs: reduce(lambda a, b: a * b, vs)), c),
    "div": lambda f, c, r: row_map(strict(_quot), c),
    "ratio": lambda f, c, r: row_map(strict(lambda a, b: _quot(a, b) - 1.0), c),
    "scale": lambda f, c, r: row_map(strict(lambda a: _p(f, "k") * a), c),
    "abs": lambda f, c, r: row_map(strict(abs), c),
    "log": lambda f, c, r: row_map(strict(lambda a: math.log(a) if a > 0 else NULL), c),
    "log1p_abs": lambda f, c, r: row_map(strict(lambda a: ((a > 0) - (a < 0)) * math.log1p(abs(a))), c),
    "sqrt": lambda f, c, r: row_map(strict(lambda a: math.sqrt(a) if a >= 0 else NULL), c),
    "square": lambda f, c, r: row_map(strict(lambda a: a * a), c),
    "pos": lambda f, c, r: row_map(strict(lambda a: a if a > 0 else 0.0), c),
    "negpart": lambda f, c, r: row_map(strict(lambda a: -a if a < 0 else 0.0), c),
    "clip": lambda f, c, r: row_map(strict(lambda a: min(max(a, _p(f, "lo")), _p(f, "hi"))), c),
    "max": _ref_minmax(max),
    "min": _ref_minmax(min),
    "gt": _cmp(lambda x, y, tol: x > y + tol),
    "lt": _cmp(lambda x, y, tol: x < y - tol),
    "ge": _cmp(lambda x, y, tol: x >= y - tol),
    "le": _cmp(lambda x, y, tol: x <= y + tol),
    "notnull": lambda f, c, r: (~np.isnan(c[0])).astype(float),
    "days_since": _ref_days_since,
    # cross-sections
    "cs_z": lambda f, c, r: cs_apply(c[0], r.by_day, r, z_score),
    "cs_rank": lambda f, c, r: cs_apply(c[0], r.by_day, r, pct_rank),
    "cs_winsor": lambda f, c, r: cs_apply(c[0], r.by_day, r, winsor(_p(f, "k"))),
    "sec_demean": lambda f, c, r: sector_apply(c[0], r, demean),
    "sec_z": lambda f, c, r: sector_apply(c[0], r, z_score),
}

#: Ops whose result is a flag: Int8 0/1 (the spec's "flags are Int8").
REFERENCE_FLAGS = frozenset({"gt", "lt", "ge", "le", "notnull"})

#: op -> (rtol, atol) of the engine against the reference, on the same input values.
#: 0: IEEE 754 rounds + - * / sqrt correctly, so the same formula on the same inputs gives the same
#: bits in any engine; comparisons, ranks (multiples of 0.5 / a count), lags and copies are exact.
TOLERANCE: dict[str, tuple[float, float]] = {op: (0.0, 0.0) for op in OPS}
# libm's log/log1p are not correctly rounded: implementations (glibc, Rust, NumPy's SIMD loops,
# CUDA) may differ in the last ulp.
TOLERANCE |= {"log": (1e-14, 0.0), "log1p_abs": (1e-14, 0.0)}
# Sums in another order: the reference sums exactly (fsum, two-pass std); Polars' rolling kernels
# update running sums and its EMA may use y + a(x - y); group means/stds are reduced in whatever
# order the engine's kernels choose (and CUDA may fuse a multiply-add). That is a few ulps of the
# terms (up to ~1e-12 relative on this panel), hence relative 1e-9 with room for other data, plus
# an absolute floor for results that are ~0 next to their terms (x - mean, a mean of returns).
# A wrong window, ddof, alpha or k moves values by 1e-3 or more.
TOLERANCE |= {op: (1e-9, 1e-12) for op in ("rmean", "rstd", "rsum", "ema")}
TOLERANCE |= {op: (1e-9, 1e-12) for op in ("cs_z", "cs_winsor", "sec_demean", "sec_z")}


def evaluate(f: Feature, column: Callable[[str], np.ndarray], rows: Rows) -> np.ndarray:
    """The reference value of ``f`` from its input columns (``column(name)``, nulls as NaN)."""
    if f.op not in REFERENCE:
        pytest.fail(f"op {f.op!r} (feature {f.name!r}) has no reference: add one to REFERENCE")
    return REFERENCE[f.op](f, [column(c) for c in f.inputs], rows)


# ======================================================================== the panel and the engines


def _few_sectors(listed: pl.DataFrame) -> pl.DataFrame:
    """Four sectors of ~7 codes, one code alone in its sector and one without a sector.

    The generator spreads 30 codes over ~20 sectors, mostly of one code, which leaves the sector
    statistics little to compute.
    """
    codes = sorted(listed.get_column("Code").unique().to_list())
    sector = {c: ("3050", "3650", "5250", "6050")[k % 4] for k, c in enumerate(codes)}
    sector[codes[0]], sector[codes[1]] = None, "9050"
    return listed.with_columns(
        pl.col("Code").replace_strict(sector, return_dtype=pl.String).alias("Sector33Code")
    )


@dataclass
class Engines:
    """A prepared panel, its rows, and every column (intermediates included) of both engines."""

    panel: pl.DataFrame
    rows: Rows
    outputs: dict[str, pl.DataFrame]  # engine -> its frame, rows in the panel's order
    _cache: dict[tuple[str, str], np.ndarray] = dataclasses.field(default_factory=dict)

    def column(self, engine: str, name: str) -> np.ndarray:
        """``name`` as the engine computed it (the panel's, for a base column), nulls as NaN."""
        key = (engine, name)
        if key not in self._cache:
            frame = self.outputs[engine] if name not in self.panel.columns else self.panel
            s = frame.get_column(name)
            if s.dtype == pl.Date:
                s = s.cast(pl.Int32)
            self._cache[key] = s.cast(pl.Float64).to_numpy()
        return self._cache[key]


def _all_output(layers: Sequence[Sequence[Feature]]) -> list[list[Feature]]:
    # every feature kept, so each intermediate can be checked where it is computed
    return [[dataclasses.replace(f, output=True) for f in layer] for layer in layers]


def _in_panel_order(out: pl.DataFrame, panel: pl.DataFrame) -> pl.DataFrame:
    out = out.sort("code_id", "Date")
    assert out.select("Code", "Date").equals(panel.select("Code", "Date")), "engine rows != panel rows"
    return out


#: The engines' columns as computed, before the one rounding to the stored dtype (Float32): the
#: reference checks each op's arithmetic, in Float64; the rounding is checked on its own
#: (``test_kept_intermediates_change_no_output``).
AS_COMPUTED = property(lambda f: pl.col(f.name))


def run_engines(panel: pl.DataFrame, layers: Sequence[Sequence[Feature]]) -> Engines:
    layers = _all_output(layers)
    features = tuple(f for layer in layers for f in layer)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Feature, "stored", AS_COMPUTED)
        cpu = compute_features(panel, layers)
        cudf_standin.install(mp)
        # the GPU engine compiles its module's catalogue: give it these layers, all kept
        mp.setattr(engine_gpu, "LAYERS", layers)
        mp.setattr(engine_gpu, "FEATURES", features)
        gpu = engine_gpu.compute_features_gpu(panel)
    return Engines(
        panel=panel,
        rows=Rows.of(panel),
        outputs={"cpu": _in_panel_order(cpu, panel), "gpu": _in_panel_order(gpu, panel)},
    )


@pytest.fixture(scope="module")
def panel() -> pl.DataFrame:
    inputs = market_inputs(N_CODES, START, END, seed=9)
    kw = inputs.kwargs() | {"listed_info": _few_sectors(inputs.listed_info)}
    return prepare_panel(inputs.daily_quotes, **kw)


@pytest.fixture(scope="module")
def engines(panel: pl.DataFrame) -> Engines:
    return run_engines(panel, LAYERS)


# ------------------------------------------------------------------ comparison


def mismatches(
    f: Feature, got: pl.Series, want: np.ndarray, keys: pl.DataFrame, *, output: bool
) -> list[str]:
    """What is wrong with an engine's column ``got`` against the reference ``want`` (empty: nothing)."""
    problems = []
    flag_op = f.op in REFERENCE_FLAGS
    if output and got.dtype != (pl.Int8 if flag_op else pl.Float64):
        problems.append(f"dtype {got.dtype}, the spec says {'Int8' if flag_op else 'Float64'}")
    if got.dtype.is_float() and (got.is_nan().any() or got.is_infinite().any()):
        problems.append("non-finite values (the spec: any non-finite result is null)")
    g = got.cast(pl.Float64).to_numpy()
    g_null, w_null = got.is_null().to_numpy(), np.isnan(want)

    def where(i: int) -> str:
        code, day = keys.row(int(i))
        return f"{code} {day}: engine {g[i]!r}, reference {want[i]!r}"

    if (bad := np.flatnonzero(g_null != w_null)).size:
        problems.append(f"nulls differ on {bad.size} rows, e.g. {where(bad[0])}")
        return problems
    rtol, atol = TOLERANCE[f.op]
    ok = g_null | (np.abs(np.where(g_null, 0, g) - np.where(w_null, 0, want)) <= atol + rtol * np.abs(want))
    if (bad := np.flatnonzero(~ok)).size:
        problems.append(f"{bad.size} values off (rtol {rtol}, atol {atol}), e.g. {where(bad[0])}")
    return problems


def check(engines: Engines, engine: str, f: Feature, *, output: bool, all_null: bool = False) -> None:
    """``f`` of ``engine`` against the reference; ``all_null``: the reference is null on every row."""
    want = evaluate(f, lambda c: engines.column(engine, c), engines.rows)
    # a comparison of nothing would pass whatever the engine did, unless nothing is the point
    assert (~np.isnan(want)).any() != all_null, (
        f"{f.name}: the reference is null on {np.isnan(want).sum()} rows"
    )
    got = engines.outputs[engine].get_column(f.name)
    problems = mismatches(f, got, want, engines.panel.select("Code", "Date"), output=output)
    assert not problems, f"{engine} {f.name} ({f.op}): " + "; ".join(problems)


# ======================================================================== the whole catalogue

ENGINES = ("cpu", "gpu")
CASES = [pytest.param(e, f, id=f"{e}-{f.name}") for e in ENGINES for f in FEATURES]


@pytest.mark.parametrize(("engine", "feature"), CASES)
def test_feature_matches_reference(engines: Engines, engine: str, feature: Feature) -> None:
    check(engines, engine, feature, output=feature.output)


def test_the_panel_has_the_edge_cases(engines: Engines) -> None:
    """What the comparisons rely on finding in the test panel (else they would pass vacuously)."""
    panel, rows = engines.panel, engines.rows
    assert rows.no_sector, "a code without a sector"
    assert any(len(g) == 1 for g in rows.by_day_sector), "a sector of one code"
    assert (panel.get_column("volume") == 0).any(), "days without trades"
    assert len({rows.day[s[0]] for s in rows.segments}) > 1, "codes listed after the first day"
    longest = max(f.window or 0 for f in FEATURES if f.grouping == "code")
    assert max(len(s) for s in rows.segments) > 2 * longest, "codes with history past the longest window"
    for c in ("stmt_prev_net_sales", "stmt_disclosed_date", "flow_smart_money_z_in"):
        s = panel.get_column(c)
        assert s.null_count() and s.is_not_null().any(), f"{c}: nulls and values"


def test_kept_intermediates_change_no_output(engines: Engines, panel: pl.DataFrame) -> None:
    """The harness keeps every intermediate at full precision; what the build ships is the same
    numbers, each rounded once to its stored dtype (Float32, flags Int8)."""
    shipped = _in_panel_order(compute_features(panel), panel)
    outputs = [f for f in FEATURES if f.output]
    assert {shipped.schema[f.name] for f in outputs if f.dtype != "Int8"} == {pl.Float32}
    assert shipped.select(f.name for f in outputs).equals(
        engines.outputs["cpu"].select(f.stored for f in outputs)
    )


# ======================================================================== probes


def _probe(name: str, op: str, inputs: Sequence[str], window: int | None = None, **params: float) -> Feature:
    return Feature(name, op, tuple(inputs), "returns", f"probe: {OPS[op][2]}", window, dict(params))


PROBES: tuple[Feature, ...] = (
    # time series over a column with interior nulls (px_close itself is carried forward)
    _probe("p_shift", "shift", ["holey"], 3),
    _probe("p_pct", "pct_change", ["holey"], 1),
    _probe("p_diff", "diff", ["holey"], 2),
    _probe("p_rmean", "rmean", ["holey"], 5),
    _probe("p_rstd", "rstd", ["holey"], 5),
    _probe("p_rsum", "rsum", ["holey"], 5),
    _probe("p_ema_span", "ema", ["holey"], 10),
    _probe("p_ema_alpha", "ema", ["holey"], alpha=0.3),
    # constant windows: a std of exactly 0, and x / 0 -> null
    _probe("p_rstd_flat", "rstd", ["stmt_annualize"], 10),
    _probe("p_per_flat_sd", "div", ["stmt_annualize", "p_rstd_flat"]),
    # every row op, with nulls, negatives and x/0 (volume is 0 on days without trades)
    _probe("p_copy", "copy", ["holey"]),
    _probe("p_add", "add", ["holey", "px_open"]),
    _probe("p_sub", "sub", ["holey", "px_open"]),
    _probe("p_mul", "mul", ["holey", "px_open", "p_pct"]),
    _probe("p_div", "div", ["holey", "volume"]),
    _probe("p_ratio", "ratio", ["holey", "px_open"]),
    _probe("p_scale", "scale", ["p_pct"], k=-3.5),
    _probe("p_abs", "abs", ["p_pct"]),
    _probe("p_log", "log", ["p_diff"]),
    _probe("p_log1p_abs", "log1p_abs", ["p_pct"]),
    _probe("p_sqrt", "sqrt", ["p_diff"]),
    _probe("p_square", "square", ["p_pct"]),
    _probe("p_pos", "pos", ["p_pct"]),
    _probe("p_negpart", "negpart", ["p_pct"]),
    _probe("p_clip", "clip", ["p_pct"], lo=-0.01, hi=0.015),
    _probe("p_max", "max", ["holey", "px_open", "px_high"]),
    _probe("p_min", "min", ["holey", "px_open", "px_low"]),
    # comparisons: against an input (equal on days without trades) and against params value
    _probe("p_gt", "gt", ["px_open", "px_close"]),
    _probe("p_ge", "ge", ["px_open", "px_close"]),
    _probe("p_lt", "lt", ["p_pct"], value=0.0),
    _probe("p_le", "le", ["holey", "px_open"]),
    _probe("p_notnull", "notnull", ["holey"]),
    _probe("p_days_since", "days_since", ["stmt_disclosed_date"]),
    # cross-sections: nulls, ties, a clip that bites, constant days, a day with one value
    _probe("p_cs_z", "cs_z", ["holey"]),
    _probe("p_cs_z_flat", "cs_z", ["day_flat"]),
    _probe("p_cs_z_lonely", "cs_z", ["lonely"]),
    _probe("p_cs_rank", "cs_rank", ["holey"]),
    _probe("p_cs_rank_ties", "cs_rank", ["obs_count"]),
    _probe("p_cs_rank_lonely", "cs_rank", ["lonely"]),
    _probe("p_cs_winsor", "cs_winsor", ["p_pct"], k=1.0),
    _probe("p_cs_winsor_lonely", "cs_winsor", ["lonely"], k=1.0),
    _probe("p_sec_demean", "sec_demean", ["holey"]),
    _probe("p_sec_z", "sec_z", ["holey"]),
    _probe("p_sec_z_flat", "sec_z", ["mkt_close"]),
)


#: z-scores of a constant day or sector (std exactly 0) and of a day with one value (no std).
ALL_NULL_PROBES = frozenset({"p_cs_z_flat", "p_cs_z_lonely", "p_sec_z_flat"})


@pytest.fixture(scope="module")
def probed(panel: pl.DataFrame) -> Engines:
    rng = np.random.default_rng(3)
    holes = pl.Series(rng.uniform(size=panel.height) < 0.08)
    first_code = panel.get_column("Code").min()
    p = panel.with_columns(
        holey=pl.when(holes).then(None).otherwise(pl.col("px_close")),
        lonely=pl.when(pl.col("Code") == first_code).then(pl.col("px_close")),
        # the same value for every code of a day: a constant cross-section
        day_flat=pl.col("mkt_close") / 7.0,
    )
    extra = frozenset(p.columns) - frozenset(BASE_COLUMNS)
    return run_engines(p, validate(PROBES, frozenset(BASE_COLUMNS) | extra))


@pytest.mark.parametrize(
    ("engine", "feature"), [pytest.param(e, f, id=f"{e}-{f.name}") for e in ENGINES for f in PROBES]
)
def test_probe_matches_reference(probed: Engines, engine: str, feature: Feature) -> None:
    check(probed, engine, feature, output=True, all_null=feature.name in ALL_NULL_PROBES)


def test_every_op_has_a_reference_and_is_exercised() -> None:
    assert not set(OPS) - set(REFERENCE), f"ops without a reference: {sorted(set(OPS) - set(REFERENCE))}"
    assert not set(REFERENCE) - set(OPS), (
        f"references of ops the spec no longer has: {sorted(set(REFERENCE) - set(OPS))}"
    )
    used = {f.op for f in (*FEATURES, *PROBES)}
    assert not set(OPS) - used, f"ops neither the catalogue nor a probe uses: {sorted(set(OPS) - used)}"


# ======================================================================== the numbers the descriptions state

#: Features whose description states its parameters, each pinned to the textbook definition below.
PINNED = (
    *(f"ret_{w}d" for w in (1, 5, 10, 20)),
    "log_ret_1d",
    *(f"ema_{w}_dev" for w in (5, 10, 20, 60, 200)),
    "rsi_14",
    "rsi_2",
    "rsi_14_delta",
    "rsi_14_overbought",
    "rsi_14_oversold",
    "macd",
    "macd_signal",
    "macd_hist",
    "bb_pct_b",
    "bb_bandwidth",
    "bb_above_upper",
    "bb_below_lower",
    *(f"vol_{w}d" for w in (5, 20, 60)),
    "sharpe_20d",
    "sharpe_60d",
    "vol_parkinson_20d",
    "atr_14_pct",
    "amihud_20d",
    "volume_spike",
    "mkt_vol_20d",
    "beta_60d",
    "alpha_60d",
    "corr_mkt_60d",
    "fin_is_fresh",
    "flow_smart_money_extreme_hi",
    "flow_smart_money_extreme_lo",
    *(f"is_mature_{w}d" for w in (5, 20, 60, 200)),
)


def textbook(rows: Rows, base: Callable[[str], np.ndarray]) -> dict[str, np.ndarray]:
    """The :data:`PINNED` features from their usual definitions, with the numbers their
    descriptions give written out here (not read from the catalogue). Nulls are NaN, which NumPy
    arithmetic propagates; divisions go through :func:`_quot` (x/0 -> null)."""
    close, high, low = base("px_close"), base("px_high"), base("px_low")

    def mean(x: np.ndarray, w: int) -> np.ndarray:
        return ts_window(x, w, rows, _mean)

    def std(x: np.ndarray, w: int) -> np.ndarray:
        return ts_window(x, w, rows, _std)

    def ema(x: np.ndarray, alpha: float) -> np.ndarray:
        return ts_ema(x, alpha, rows)

    def span(w: int) -> float:
        return 2.0 / (w + 1.0)

    def ret(x: np.ndarray, w: int) -> np.ndarray:
        return ts_lag(x, w, rows, lambda now, then: _quot(now, then) - 1.0)

    def quot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return row_map(strict(_quot), [a, b])

    def above(x: np.ndarray, y: np.ndarray | float) -> np.ndarray:
        return row_map(flag(lambda a, b: a > b), [x, np.broadcast_to(y, x.shape)])

    def below(x: np.ndarray, y: np.ndarray | float) -> np.ndarray:
        return row_map(flag(lambda a, b: a < b), [x, np.broadcast_to(y, x.shape)])

    out: dict[str, np.ndarray] = {}
    r1 = ret(close, 1)
    # returns, winsorised at +-5 sigma of the day's cross-section
    for w in (1, 5, 10, 20):
        out[f"ret_{w}d"] = cs_apply(ret(close, w), rows.by_day, rows, winsor(5.0))
    out["log_ret_1d"] = row_map(strict(lambda v: math.log(v) if v > 0 else NULL), [r1 + 1.0])
    for w in (5, 10, 20, 60, 200):
        out[f"ema_{w}_dev"] = quot(close, ema(close, span(w))) - 1.0
    # RSI(n) with Wilder smoothing: gains and losses averaged with alpha 1/n, 100 g / (g + l)
    move = ts_lag(close, 1, rows, lambda now, then: now - then)
    gain, loss = np.fmax(move, 0.0) + move * 0.0, np.fmax(-move, 0.0) + move * 0.0  # NaN stays NaN
    for n in (14, 2):
        g, lo = ema(gain, 1.0 / n), ema(loss, 1.0 / n)
        out[f"rsi_{n}"] = 100.0 * quot(g, g + lo)
    out["rsi_14_delta"] = ts_lag(out["rsi_14"], 5, rows, lambda now, then: now - then)
    out["rsi_14_overbought"], out["rsi_14_oversold"] = above(out["rsi_14"], 70.0), below(out["rsi_14"], 30.0)
    # MACD (12, 26, 9), divided by the close
    out["macd"] = quot(ema(close, span(12)) - ema(close, span(26)), close)
    out["macd_signal"] = ema(out["macd"], span(9))
    out["macd_hist"] = out["macd"] - out["macd_signal"]
    # Bollinger (20 days, 2 sigma); sigma is the sample std (ddof 1) of the project's rstd, where
    # Bollinger's own bands use the population std
    mid, sd = mean(close, 20), std(close, 20)
    upper, lower = mid + 2.0 * sd, mid - 2.0 * sd
    out["bb_pct_b"] = quot(close - lower, upper - lower)
    out["bb_bandwidth"] = quot(upper - lower, mid)
    out["bb_above_upper"], out["bb_below_lower"] = above(close, upper), below(close, lower)
    # volatility and Sharpe of daily returns, annualised by sqrt(252)
    for w in (5, 20, 60):
        out[f"vol_{w}d"] = std(r1, w) * math.sqrt(252.0)
    for w in (20, 60):
        out[f"sharpe_{w}d"] = quot(mean(r1, w), std(r1, w)) * math.sqrt(252.0)
    # Parkinson: sqrt(252 / (4 ln 2) * 20-day mean of ln(H/L)^2)
    log_hl = row_map(strict(lambda h, lo: math.log(h / lo) if h > 0 and lo > 0 else NULL), [high, low])
    out["vol_parkinson_20d"] = np.sqrt(mean(log_hl**2, 20) * 252.0 / (4.0 * math.log(2.0)))
    # Wilder ATR(14): true range max(H - L, |H - C_prev|, |L - C_prev|), alpha 1/14, / close
    prev = ts_lag(close, 1, rows, lambda now, then: then)
    true_range = row_map(strict(lambda h, lo, p: max(h - lo, abs(h - p), abs(lo - p))), [high, low, prev])
    out["atr_14_pct"] = quot(ema(true_range, 1.0 / 14.0), close)
    # Amihud: 20-day sum |r| / 20-day sum of turnover value, x1e9
    out["amihud_20d"] = (
        quot(ts_window(np.abs(r1), 20, rows, math.fsum), ts_window(base("turnover"), 20, rows, math.fsum))
        * 1e9
    )
    out["volume_spike"] = above(quot(base("volume"), mean(base("volume"), 20)), 3.0)
    # TOPIX over 20 and 60 days: beta = cov(r, m) / var(m), alpha = (mean r - beta mean m) x252
    m1 = ret(base("mkt_close"), 1)
    out["mkt_vol_20d"] = std(m1, 20) * math.sqrt(252.0)
    both = np.stack([r1, m1], axis=1)
    moments = rows.nulls().repeat(4).reshape(-1, 4)  # cov, var m, var r, mean m, per row
    for seg in rows.segments:
        for k in range(59, len(seg)):
            pair = both[seg[k - 59] : seg[k] + 1]
            if np.isnan(pair).any():
                continue
            r, m = pair[:, 0].tolist(), pair[:, 1].tolist()
            mr, mm = _mean(r), _mean(m)
            moments[seg[k]] = (
                math.fsum((a - mr) * (b - mm) for a, b in zip(r, m, strict=True)) / 60,
                math.fsum((b - mm) ** 2 for b in m) / 60,
                math.fsum((a - mr) ** 2 for a in r) / 60,
                mm,
            )
    cov, var_m, var_r, mean_m = moments.T
    out["beta_60d"] = quot(cov, var_m)
    out["alpha_60d"] = (mean(r1, 60) - out["beta_60d"] * mean_m) * 252.0
    out["corr_mkt_60d"] = quot(cov, np.sqrt(var_r * var_m))
    # statements disclosed within 10 calendar days; smart-money z beyond +-2
    days = np.array(rows.day, dtype=float) - base("stmt_disclosed_date")
    out["fin_is_fresh"] = row_map(flag(lambda d: d <= 10), [days])
    z = base("flow_smart_money_z_in")
    out["flow_smart_money_extreme_hi"] = row_map(flag(lambda v: v >= 2.0), [z])
    out["flow_smart_money_extreme_lo"] = row_map(flag(lambda v: v <= -2.0), [z])
    # maturity: the code has >= w rows of history, counted here from its own rows
    position = rows.nulls()
    for seg in rows.segments:
        position[seg.start : seg.stop] = np.arange(1, len(seg) + 1)
    for w in (5, 20, 60, 200):
        out[f"is_mature_{w}d"] = (position >= w).astype(float)
    return out


@pytest.fixture(scope="module")
def pins(engines: Engines) -> dict[str, np.ndarray]:
    out = textbook(engines.rows, lambda c: engines.column("cpu", c))
    assert set(out) == set(PINNED)
    return out


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("name", PINNED)
def test_described_parameters(engines: Engines, pins: dict[str, np.ndarray], engine: str, name: str) -> None:
    """A chain of reference ops from the base columns: rounding differs from the engines' chain, so
    relative 1e-9 (an absolute 1e-12 floor) for numbers; flags, whose thresholds no value lies within
    1e-9 of on this panel, exactly."""
    want = pins[name]
    got = engines.outputs[engine].get_column(name)
    g, g_null, w_null = got.cast(pl.Float64).to_numpy(), got.is_null().to_numpy(), np.isnan(pins[name])
    assert (~w_null).any()
    assert np.array_equal(g_null, w_null), f"{name}: nulls differ on {int((g_null != w_null).sum())} rows"
    bad = np.flatnonzero(np.abs(g[~g_null] - want[~w_null]) > 1e-12 + 1e-9 * np.abs(want[~w_null]))
    assert not bad.size, (
        f"{name}: {bad.size} values off, e.g. engine {g[~g_null][bad[0]]!r}, textbook {want[~w_null][bad[0]]!r}"
    )
