"""The training data side: the dense panel, folds with embargo, the train-only normaliser, the
past-only day graph and one-day batches."""

from __future__ import annotations

import datetime as dt
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import polars as pl
import pytest

from gogooku3.devtools.seed_features import CI_MARKET
from gogooku3.features import OUTPUT_FEATURES
from gogooku3.lake import open_lake
from gogooku3.training.dataset import DatasetError, Panel, _read_ahead, load_panel
from gogooku3.training.folds import FoldError, FoldPlan, walk_forward
from gogooku3.training.graph import GraphConfig, day_graph
from gogooku3.training.normalise import Normaliser
from gogooku3.training.samples import Samples, excess_targets, sample_rows
from gogooku3.training.walkforward import usable_days

START, END = CI_MARKET["start"], CI_MARKET["end"]
H = (1, 5, 10, 20)


@pytest.fixture(scope="module")
def lake_root(features_lake_factory):
    return features_lake_factory()


@pytest.fixture(scope="module")
def panel(lake_root) -> Panel:
    return load_panel(open_lake(lake_root), START, END, H)


@pytest.fixture(scope="module")
def folds(panel):
    first, stop = usable_days(panel)
    return walk_forward(first, stop, FoldPlan(), H)


def _copy(lake_root, tmp_path):
    dst = tmp_path / "lake"
    shutil.copytree(lake_root, dst)
    return open_lake(dst)


# ---------------------------------------------------------------- panel


def test_panel_holds_the_partitions_values(panel, lake_root):
    lake = open_lake(lake_root)
    day = panel.days[200]
    part = lake.read_partition("features", "features", day)
    assert panel.targets.dtype == np.float64  # scored exactly as the lake holds them
    assert panel.x.dtype == np.float32 and panel.x.shape == (
        len(panel.days),
        len(panel.codes),
        len(panel.features),
    )
    assert len(panel.features) == len(OUTPUT_FEATURES) and not any(
        f.startswith("target_") for f in panel.features
    )
    t = panel.day_index(day)
    for row in part.sample(20, seed=1).iter_rows(named=True):
        i = panel.codes.index(row["Code"])
        for f in ("ret_1d", "ret_5d", panel.features[-1]):
            want = row[f]
            got = panel.x[t, i, panel.feature_index(f)]
            assert (np.isnan(got) and want is None) or got == np.float32(want)
        want = row["target_ret_1d"]
        assert (np.isnan(panel.targets[t, i, 0]) and want is None) or panel.targets[t, i, 0] == want
        assert panel.present[t, i]
    assert panel.present[t].sum() == part.height


def test_window_is_a_view_not_a_copy(panel):
    w = panel.window(100)
    assert w.shape == (20, len(panel.codes), len(panel.features))
    assert np.shares_memory(w, panel.x)
    np.testing.assert_array_equal(w[-1], panel.x[100])
    with pytest.raises(IndexError):
        panel.window(18)


def test_a_code_with_fewer_than_L_days_is_not_a_sample():
    T, N, F = 30, 3, 2
    present = np.ones((T, N), dtype=bool)
    present[:15, 1] = False  # code 1 listed from day 15
    present[25, 2] = False  # code 2 has a hole on day 25
    panel = Panel(
        days=tuple(dt.date(2024, 1, 1) + dt.timedelta(days=k) for k in range(T)),
        codes=("A", "B", "C"),
        features=("f0", "f1"),
        horizons=(1,),
        x=np.zeros((T, N, F), np.float32),
        present=present,
        targets=np.zeros((T, N, 1), np.float32),
        sector=np.zeros(N, np.int32),
        sectors=("s",),
    )
    assert panel.eligible(19).tolist() == [0, 2]
    assert panel.eligible(29).tolist() == [0]  # B has 15 days, C's hole 4 days ago
    assert 1 in panel.eligible(29, seq_len=15).tolist()
    assert panel.eligible(24).tolist() == [0, 2]


@pytest.mark.parametrize(
    ("start", "end", "horizons", "message"),
    [
        (END, START, H, "is after end"),
        (dt.date(2022, 1, 1), dt.date(2022, 1, 2), H, "holds no JPX trading day"),
        (START, dt.date(2024, 3, 1), H, "is missing"),
        (START, END, (1, 7), "horizon(s) 7 have no target column (target_ret_7d)"),
    ],
)
def test_bad_requests_name_what_is_wrong(lake_root, start, end, horizons, message):
    with pytest.raises(DatasetError) as exc:
        load_panel(open_lake(lake_root), start, end, horizons)
    assert message in str(exc.value)


def test_a_missing_partition_is_named(lake_root, tmp_path):
    lake = _copy(lake_root, tmp_path)
    gone = dt.date(2023, 3, 15)
    assert lake.delete_partition("features", "features", gone)
    with pytest.raises(DatasetError, match="missing 1 of the .* trading days .*: 2023-03-15"):
        load_panel(lake, START, END, H)


def test_schema_drift_is_named(lake_root, tmp_path):
    lake = _copy(lake_root, tmp_path)
    day = dt.date(2023, 5, 10)
    part = lake.read_partition("features", "features", day).drop("rsi_14")
    lake.write_partition("features", "features", day, part, source="test", sort_by=("Date", "Code"))
    with pytest.raises(
        DatasetError, match=r"schema drift: features/features of 2023-05-10 lacks column\(s\) \['rsi_14'\]"
    ):
        load_panel(lake, START, END, H)


def test_an_infinite_feature_value_is_missing(lake_root, tmp_path):
    lake = _copy(lake_root, tmp_path)
    day = dt.date(2023, 5, 10)
    part = lake.read_partition("features", "features", day)
    code = part["Code"][3]
    part = part.with_columns(
        pl.when(pl.col("Code") == code).then(float("inf")).otherwise(pl.col("ret_5d")).alias("ret_5d")
    )
    lake.write_partition("features", "features", day, part, source="test", sort_by=("Date", "Code"))
    panel = load_panel(lake, dt.date(2023, 5, 1), dt.date(2023, 5, 31), H)
    t, i, f = panel.day_index(day), panel.codes.index(code), panel.feature_index("ret_5d")
    assert np.isnan(panel.x[t, i, f]) and np.isfinite(panel.x[t, :, f]).sum() == part.height - 1


def test_a_single_feature_without_nulls_loads(lake_root, tmp_path):
    # One float column with no nulls is handed over by Polars as a read-only view of Arrow memory.
    lake = _copy(lake_root, tmp_path)
    day = dt.date(2023, 5, 10)
    part = lake.read_partition("features", "features", day)
    part = part.with_columns(pl.col("ret_1d").fill_null(0.0).fill_nan(0.0))
    part = part.with_columns(
        pl.when(pl.col("Code") == part["Code"][0])
        .then(float("-inf"))
        .otherwise(pl.col("ret_1d"))
        .alias("ret_1d")
    )
    lake.write_partition("features", "features", day, part, source="test", sort_by=("Date", "Code"))
    panel = load_panel(lake, day, day, H, features=("ret_1d",))
    assert panel.features == ("ret_1d",)
    assert np.isnan(panel.x[0, panel.codes.index(part["Code"][0]), 0])
    assert np.isfinite(panel.x[0, :, 0]).sum() == part.height - 1


def test_partitions_are_decoded_a_few_ahead_not_all_at_once():
    """The panel is filled in day order from a thread pool; no more than ``depth`` partitions may be
    decoded ahead of the one being copied (``pool.map`` would decode the whole range first)."""
    started = []
    lock = threading.Lock()

    def decode(day: int) -> int:
        with lock:
            started.append(day)
        return day

    with ThreadPoolExecutor(max_workers=4) as pool:
        for k, day in enumerate(_read_ahead(pool, decode, range(100), depth=8)):
            assert day == k
            time.sleep(0.001)  # a consumer slower than the decoders
            with lock:
                assert len(started) <= k + 8
    assert sorted(started) == list(range(100))


# ---------------------------------------------------------------- folds


def test_folds_embargo_and_consecutive_tests(folds):
    assert len(folds) == 4
    for f in folds:
        assert f.train.start < f.train.stop <= f.valid.start - 20
        assert f.valid.stop <= f.test.start - 20
        assert len(f.train) >= 120 and len(f.valid) == 60
        assert f.train.start == folds[0].train.start  # expanding
    for a, b in zip(folds, folds[1:], strict=False):
        assert a.test.stop == b.test.start  # consecutive, no overlap
    tested = [t for f in folds for t in f.test.range()]
    assert len(tested) == len(set(tested))


def test_rolling_folds_keep_their_length(panel):
    first, stop = usable_days(panel)
    plan = FoldPlan(mode="rolling", train_days=100)
    for f in walk_forward(first, stop, plan, H):
        assert len(f.train) == 100 and f.train.stop == f.valid.start - 20


def test_embargo_never_shorter_than_the_longest_horizon(panel):
    with pytest.raises(FoldError, match="shorter than the longest horizon"):
        walk_forward(0, 400, FoldPlan(embargo=10), H)


def test_a_range_too_short_for_the_folds_says_what_it_needs():
    with pytest.raises(
        FoldError, match=r"4 fold\(s\) need at least 224 usable trading days .* the range has 200"
    ):
        walk_forward(0, 200, FoldPlan(), H)


# ---------------------------------------------------------------- normaliser


def _fit(panel, fold, x=None):
    return Normaliser.fit(panel.x if x is None else x, sample_rows(panel, fold.train), panel.features)


def test_normaliser_ignores_validation_and_test_rows(panel, folds):
    fold = folds[1]
    before = _fit(panel, fold)
    x = panel.x.copy()
    rng = np.random.default_rng(0)
    for block in (fold.valid, fold.test):
        x[block.start : block.stop] += rng.normal(0, 100, x[block.start : block.stop].shape).astype(
            np.float32
        )
    assert _fit(panel, fold, x).equals(before)
    # ... and it does read the training rows.
    x[fold.train.start : fold.train.stop] *= 3.0
    assert not _fit(panel, fold, x).equals(before)


def test_normaliser_clips_flags_missing_and_round_trips(panel, folds):
    norm = _fit(panel, folds[0])
    raw = panel.x[300, :50].copy()
    raw[0, 0] = np.nan
    raw[1, 1] = norm.centre[1] + 1e6 * norm.scale[1]
    z, missing = norm.transform(raw)
    assert z[0, 0] == 0.0 and missing[0, 0] == 1.0 and missing[2, 2] == float(np.isnan(raw[2, 2]))
    assert z[1, 1] == 5.0 and np.abs(z).max() <= 5.0
    assert Normaliser.from_json(norm.to_json()).equals(norm)
    # median ~0 and IQR ~1.349 on the training rows of a well-populated feature
    f = panel.feature_index("ret_5d")
    train = np.concatenate(
        [norm.transform(panel.x[t, c])[0][:, f] for t, c in sample_rows(panel, folds[0].train)]
    )
    assert abs(np.median(train)) < 1e-3
    q75, q25 = np.percentile(train, [75, 25])
    assert q75 - q25 == pytest.approx(1.349, rel=0.02)


# ---------------------------------------------------------------- graph


def test_graph_of_day_d_reads_no_return_after_d(panel):
    returns = panel.x[:, :, panel.feature_index("ret_1d")].copy()
    codes = panel.eligible(250)
    cfg = GraphConfig(k=10)
    before = day_graph(returns, 250, codes, panel.sector, cfg)
    future = returns.copy()
    future[251:] = np.random.default_rng(0).normal(0, 1, future[251:].shape)
    after = day_graph(future, 250, codes, panel.sector, cfg)
    np.testing.assert_array_equal(before[0], after[0])
    np.testing.assert_array_equal(before[1], after[1])
    # ... while the window's own days do matter (day D itself included).
    past = returns.copy()
    past[250] = np.random.default_rng(1).normal(0, 1, past[250].shape)
    assert not np.array_equal(day_graph(past, 250, codes, panel.sector, cfg)[0], before[0])


def test_graph_links_each_code_to_its_k_most_correlated_peers(panel):
    returns = panel.x[:, :, panel.feature_index("ret_1d")]
    codes = panel.eligible(250)
    edge_index, edge_attr = day_graph(returns, 250, codes, panel.sector, GraphConfig(k=5))
    assert edge_index.shape == (2, 5 * len(codes))
    assert np.bincount(edge_index[1], minlength=len(codes)).tolist() == [5] * len(codes)
    assert (edge_index[0] != edge_index[1]).all()
    i = 7
    r = returns[191:251, codes].astype(np.float64)
    corr = np.corrcoef(np.nan_to_num(r - np.nanmean(r, axis=0)), rowvar=False)[i]
    corr[i] = -np.inf
    assert set(edge_index[0][edge_index[1] == i].tolist()) == set(np.argsort(-corr)[:5].tolist())
    same = panel.sector[codes][edge_index[0]] == panel.sector[codes][edge_index[1]]
    np.testing.assert_array_equal(edge_attr[:, 1], same.astype(np.float32))


def test_graph_refuses_a_target_column():
    with pytest.raises(ValueError, match="is a target"):
        GraphConfig(return_feature="target_ret_1d")


# ---------------------------------------------------------------- batches


def test_batches_are_one_day_chunks_of_at_most_batch_codes(panel, folds):
    samples = Samples(panel, _fit(panel, folds[0]), GraphConfig(), batch_codes=128)
    rows = samples.rows(folds[0].valid)[:3]
    seen = {}
    for batch in samples.batches(rows, seed=0):
        assert len(batch.codes) <= 128
        assert batch.x.shape == (len(batch.codes), 20, len(panel.features))
        assert batch.edge_index.max() < len(batch.codes)
        seen.setdefault(batch.t, []).extend(batch.codes.tolist())
    for t, codes in rows:
        assert sorted(seen[t]) == sorted(codes.tolist())  # each day's codes exactly once


def test_excess_targets_are_centred_per_day(panel):
    ex = excess_targets(panel)
    day_means = np.nanmean(ex[100:400, :, 0], axis=1)
    assert np.abs(day_means).max() < 1e-6
    # the ranking within a day is unchanged
    t = 250
    ok = np.isfinite(ex[t, :, 0])
    assert (np.argsort(ex[t, ok, 0]) == np.argsort(panel.targets[t, ok, 0])).all()
