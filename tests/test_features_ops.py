"""The operation table is the one definition of every op: both engines, the look-back rule, the contract.

``gogooku3.features.ops.OPERATIONS`` maps each op to its grouping, arity, meaning, look-back rule and
its Polars and cuDF implementations. These tests guard that structure: every entry is complete, the
catalogue's ``lookback``/``min_history`` and both engines read the table (a throwaway op registered
in it is compiled by both, a changed rule changes the catalogue's numbers), and no engine names an op.
"""

from __future__ import annotations

import ast
import dataclasses
import datetime as dt
import inspect
from pathlib import Path

import cudf_standin
import polars as pl
import pytest

from gogooku3.features import catalogue as cat
from gogooku3.features import engine_cpu, engine_gpu
from gogooku3.features.ops import OPERATIONS, OWN_ROW, Lookback, Op
from gogooku3.features.prepare import BASE_COLUMNS, prepare_panel
from gogooku3.features.spec import OPS, Feature, validate
from gogooku3.features.testing import market_inputs
from gogooku3.quality.suites import feature_lookbacks


def _feature(name: str, op: str, inputs: tuple[str, ...], window: int | None = None, **params) -> Feature:
    return Feature(name, op, inputs, "returns", f"test: {op}", window, dict(params))


# ------------------------------------------------------------------ every entry is complete


@pytest.mark.parametrize("name", list(OPERATIONS))
def test_every_op_has_both_engines_and_a_lookback_rule(name: str) -> None:
    op = OPERATIONS[name]
    assert isinstance(op, Op) and op.name == name
    assert op.grouping in ("code", "row", "date", "date_sector")
    assert op.meaning.strip()
    assert isinstance(op.lookback, Lookback), f"{name}: no look-back rule"
    # only per-code time series read history; the rule is what Feature.lookback / min_history use
    assert op.lookback.reads_history == (op.grouping == "code"), name
    assert callable(op.polars) and callable(op.cudf), f"{name}: an engine implementation is missing"
    # each implementation takes the feature and as many inputs as the op's arity says
    counts = [op.arity] if op.arity > 0 else [1, 2, 3]
    for n in counts:
        inspect.signature(op.polars).bind("feature", *["x"] * n)
        inspect.signature(op.cudf).bind("frame", "feature", *["x"] * n)
    # the spec's view is the table
    assert OPS[name] == (op.grouping, op.arity, op.meaning)


@pytest.mark.parametrize("name", list(OPERATIONS))
def test_the_kernel_flag_says_which_polars_implementations_are_python_functions(name: str) -> None:
    """The CPU engine evaluates kernels in a step of their own: the flag must match what the
    implementation builds (a Python function inside the Polars expression)."""
    op = OPERATIONS[name]
    n = op.arity if op.arity > 0 else 2
    f = _feature("t", name, tuple(f"x{i}" for i in range(n)), 3, k=2.0, value=0.5, lo=0.0, hi=1.0, alpha=0.5)
    built = op.polars(f, *(pl.col(c) for c in f.inputs))
    assert ("python_udf" in str(built)) == op.kernel, name


def test_the_spec_view_lists_exactly_the_table() -> None:
    assert list(OPS) == list(OPERATIONS) and len(OPS) == len(OPERATIONS)


# ------------------------------------------------------------------ lookback and min_history read the table


def test_lookback_and_min_history_follow_the_table_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    # vol_20d = scale(rstd(_ret_1d_raw, 20)), _ret_1d_raw = pct_change(px_close, 1)
    assert cat.feature("_sd_20").lookback == 20
    assert cat.min_history("vol_20d") == 21
    assert feature_lookbacks()["vol_20d"] == 21
    # give rstd another rule in the table: the catalogue's numbers follow it
    late = Lookback("test", "mature w + 5 rows after its input", True, mature_offset=5, window_required=True)
    monkeypatch.setitem(OPERATIONS, "rstd", dataclasses.replace(OPERATIONS["rstd"], lookback=late))
    assert cat.min_history("vol_20d") == 1 + 1 + 25
    monkeypatch.setitem(OPERATIONS, "rstd", dataclasses.replace(OPERATIONS["rstd"], lookback=OWN_ROW))
    assert cat.feature("_sd_20").lookback == 0
    assert cat.min_history("vol_20d") == 2
    assert feature_lookbacks()["vol_20d"] == 1


def test_catalogue_records_read_min_history_and_dtype_from_the_table() -> None:
    for r in cat.catalogue_records():
        if r["kind"] != "feature":
            continue
        op = OPERATIONS[r["op"]]
        assert r["grouping"] == op.grouping
        assert r["dtype"] == ("Int8" if op.flag else "Float32")
        f = cat.feature(r["name"])
        assert r["min_history"] == max(cat.min_history(i) for i in f.inputs) + op.lookback.rows_added(
            f.window
        )


# ------------------------------------------------------------------ both engines compile through the table


def _pl_skip2(f: Feature, x: pl.Expr) -> pl.Expr:
    return pl.when(pl.col("obs_count") > 2 * f.window).then(x.shift(2 * f.window))


def _cu_skip2(d, f: Feature, x):
    return x.shift(2 * f.window).where((d.obs > 2 * f.window).fillna(False))


#: Throwaway ops that exist only in this test's table: the engines know them from their entries alone.
THROWAWAY = (
    Op(
        "t_double",
        "row",
        1,
        "2 * x",
        OWN_ROW,
        polars=lambda f, x: x * 2.0,
        cudf=lambda d, f, x: x * 2.0,
    ),
    Op(
        "t_skip2",
        "code",
        1,
        "x[t-2w]",
        Lookback("skip2", "reads x[t-2w]: mature 2w rows after its input", True, mature_offset=0),
        polars=_pl_skip2,
        cudf=_cu_skip2,
    ),
)


@pytest.fixture
def throwaway_ops(monkeypatch: pytest.MonkeyPatch) -> tuple[Feature, ...]:
    for op in THROWAWAY:
        monkeypatch.setitem(OPERATIONS, op.name, op)
    features = (
        _feature("double_close", "t_double", ("px_close",)),
        _feature("skip_close", "t_skip2", ("px_close",), 3),
        _feature("skip_double", "t_skip2", ("double_close",), 2),
    )
    monkeypatch.setattr(cat, "FEATURES", (*cat.FEATURES, *features))
    return features


def test_a_throwaway_op_gets_its_lookback_and_min_history_from_its_entry(throwaway_ops) -> None:
    assert [f.lookback for f in throwaway_ops] == [0, 3, 2]
    assert [cat.min_history(f.name) for f in throwaway_ops] == [1, 4, 3]


def test_both_engines_compile_a_throwaway_op_from_its_entry(throwaway_ops, monkeypatch) -> None:
    layers = validate(throwaway_ops, frozenset(BASE_COLUMNS))
    inputs = market_inputs(6, dt.date(2022, 1, 4), dt.date(2022, 2, 28), seed=3)
    panel = prepare_panel(inputs.daily_quotes, **inputs.kwargs())
    cpu = engine_cpu.compute_features(panel, layers).sort("Code", "Date")
    cudf_standin.install(monkeypatch)
    monkeypatch.setattr(engine_gpu, "LAYERS", layers)
    monkeypatch.setattr(engine_gpu, "FEATURES", throwaway_ops)
    gpu = engine_gpu.compute_features_gpu(panel).sort("Code", "Date")
    want = (
        panel.sort("Code", "Date")
        .with_columns(double_close=pl.col("px_close") * 2.0)
        .with_columns(
            skip_close=pl.col("px_close").shift(6).over("Code"),
            skip_double=pl.col("double_close").shift(4).over("Code"),
        )
        .select("Code", "Date", "double_close", "skip_close", "skip_double")
    )
    assert want.get_column("skip_close").null_count() < want.height  # something to compare
    assert cpu.select(want.columns).equals(want)
    assert gpu.select(want.columns).equals(want)


# ------------------------------------------------------------------ no engine names an op


@pytest.mark.parametrize("module", [engine_cpu, engine_gpu], ids=lambda m: m.__name__.rsplit(".", 1)[-1])
def test_no_engine_branches_on_an_op(module) -> None:
    tree = ast.parse(Path(module.__file__).read_text(encoding="utf-8"))
    named = sorted({n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and n.value in OPERATIONS})
    assert not named, f"{module.__name__} names ops {named}: an op's code belongs in its OPERATIONS entry"
    reads_op = [n.lineno for n in ast.walk(tree) if isinstance(n, ast.Attribute) and n.attr == "op"]
    assert not reads_op, f"{module.__name__} dispatches on Feature.op (lines {reads_op}): use f.operation"
