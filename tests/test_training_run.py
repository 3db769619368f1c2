"""Walk-forward runs end to end on the synthetic market: the planted-alpha oracle, the leakage
canary (and that it can fire), CPU determinism, resume after a real kill, and the CLI contract."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from gogooku3.devtools.airflow_env import isolated
from gogooku3.devtools.seed_features import CI_MARKET
from gogooku3.lake import open_lake
from gogooku3.market import MarketConfig, generate_market
from gogooku3.training.baselines import Ridge
from gogooku3.training.checks import leakage_canary, oracle_fractions, oracle_rank_ic
from gogooku3.training.dataset import Panel, feature_columns, load_panel
from gogooku3.training.folds import Block, FoldPlan, walk_forward
from gogooku3.training.graph import GraphConfig
from gogooku3.training.normalise import Normaliser
from gogooku3.training.samples import Samples, sample_rows
from gogooku3.training.trainer import TrainConfig, predict_network, train_network
from gogooku3.training.walkforward import MODELS, RunConfig, oos_targets, run_walk_forward, usable_days

START, END = CI_MARKET["start"], CI_MARKET["end"]
GOGOOKU3 = str(Path(sys.executable).with_name("gogooku3"))


def _run(lake_root: Path, out: Path, **kw) -> dict:
    cfg = RunConfig(start=kw.pop("start", START), end=kw.pop("end", END), out_dir=out, threads=2, **kw)
    return run_walk_forward(cfg, open_lake(lake_root))


def _market(signal: float = 1.0):
    return generate_market(
        MarketConfig(seed=7, n_codes=CI_MARKET["n_codes"], start=START, end=END, signal=signal)
    )


def _refuse(constant: str):
    raise AssertionError(f"{constant} in a JSON file")


def _oos_keys(summary: dict) -> pl.DataFrame:
    return pl.read_parquet(summary["oos_predictions"]).select("Date", "Code").unique()


@pytest.fixture(scope="module")
def signal_run(walk_forward_factory) -> dict:
    return walk_forward_factory()


def test_outputs_follow_the_contract(signal_run):
    preds = pl.read_parquet(signal_run["oos_predictions"])
    assert preds.schema == pl.Schema(
        {
            "Date": pl.Date,
            "Code": pl.Utf8,
            "model": pl.Utf8,
            "fold": pl.Int64,
            **{f"pred_ret_{h}d": pl.Float64 for h in (1, 5, 10, 20)},
        }
    )
    assert sorted(preds["model"].unique()) == sorted(MODELS)
    assert len(signal_run["folds"]) == 4
    for f in signal_run["folds"]:
        assert f["train_end"] < f["valid_start"] <= f["valid_end"] < f["test_start"] <= f["test_end"]
        assert set(f["metrics"]) == set(MODELS)
    tests = [(f["test_start"], f["test_end"]) for f in signal_run["folds"]]
    assert all(a[1] < b[0] for a, b in zip(tests, tests[1:], strict=False))
    # every prediction lies in its own fold's test window
    for f in signal_run["folds"]:
        p = preds.filter(pl.col("fold") == f["fold"])
        assert p["Date"].min().isoformat() >= f["test_start"] and p["Date"].max().isoformat() <= f["test_end"]
    out = Path(signal_run["oos_predictions"]).parent
    # strict JSON: an undefined figure is null, never NaN or Infinity
    assert json.loads((out / "summary.json").read_text(), parse_constant=_refuse) == signal_run
    for name in ("weights.pt", "model_config.json", "normaliser.json", "features.json", "graph.json"):
        assert (out / "model" / name).stat().st_size > 0
    assert json.loads((out / "model" / "features.json").read_text())[:2] == ["ret_1d", "ret_5d"]
    for png in signal_run["plots"]:
        assert Path(png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert set(signal_run["oos"]) == set(MODELS)
    assert {"ic", "rank_ic", "icir", "hit_rate", "decile_spread", "spread_sharpe", "turnover"} <= set(
        signal_run["oos"]["ridge"]["1d"]
    )


def test_network_reaches_most_of_the_planted_alpha(signal_run, features_lake_factory):
    """Out-of-sample RankIC@1d of atft_gat_fan >= 0.6 x the oracle's on the same test days."""
    scored = oos_targets(signal_run)
    truth = open_lake(features_lake_factory()).read_range(
        "features", "features", START, END, columns=["Date", "Code", "target_ret_1d"]
    )
    # the targets the run scored against are the lake's, on exactly the OOS rows
    assert (
        scored.select("Date", "Code", "target_ret_1d")
        .sort("Date", "Code")
        .equals(truth.join(_oos_keys(signal_run), on=["Date", "Code"]).sort("Date", "Code"))
    )
    oracle, se, days = oracle_rank_ic(_market(), scored)
    assert days == scored["Date"].n_unique() >= 200
    fractions = oracle_fractions(signal_run["oos"], oracle)
    print(f"oracle RankIC@1d {oracle:.4f} (SE {se:.4f}, {days} days); fractions {fractions}")
    assert oracle > 0.05
    assert fractions["atft_gat_fan"] >= 0.6, fractions


def test_demo_summary_judges_the_run_against_the_oracle(signal_run):
    from gogooku3.devtools.demo_summary import training_lines

    lines = training_lines(signal_run, _market())
    oracle, _, days = oracle_rank_ic(_market(), oos_targets(signal_run))
    assert (
        lines[0].startswith(f"oracle (planted alpha) RankIC@1d {oracle:.4f}")
        and f"{days} test days" in lines[0]
    )
    fractions = oracle_fractions(signal_run["oos"], oracle)
    for model in MODELS:
        (line,) = [line for line in lines[1:] if line.split()[0] == model]
        assert line.endswith(f"{fractions[model]:.2f} of the oracle")


def test_saved_model_predicts_what_the_run_predicted(signal_run, features_lake_factory):
    from gogooku3.training.inference import SavedNetwork

    last = signal_run["folds"][-1]
    net = SavedNetwork.load(Path(signal_run["oos_predictions"]).parent / "model")
    assert net.seen_through == dt.date.fromisoformat(last["valid_end"])
    ran = pl.read_parquet(signal_run["oos_predictions"]).filter(
        (pl.col("model") == "atft_gat_fan") & (pl.col("fold") == last["fold"])
    )
    served = net.predict(open_lake(features_lake_factory()), ran["Date"].unique().to_list())
    assert served.columns == ["Date", "Code", *(f"pred_ret_{h}d" for h in (1, 5, 10, 20))]
    both = ran.join(served, on=["Date", "Code"], how="full", suffix="_served")
    assert both.height == ran.height == served.height
    for h in (1, 5, 10, 20):
        np.testing.assert_allclose(
            both[f"pred_ret_{h}d_served"], both[f"pred_ret_{h}d"], rtol=1e-4, atol=1e-7
        )


def test_canary_stays_quiet_without_a_signal(features_lake_factory, tmp_path):
    # Two folds: the same 248 test days as the signal run's four, at half its training; one epoch
    # past the ridge start (CI's budget).
    summary = _run(
        features_lake_factory(signal=0.0),
        tmp_path / "noise",
        train=TrainConfig(size="tiny", max_epochs=1, patience=1),
        plan=FoldPlan(n_folds=2),
    )
    assert summary["oos"]["ridge"]["1d"]["n_days"] >= 240
    fired = leakage_canary(summary["oos"])
    print({m: summary["oos"][m]["1d"]["rank_ic"] for m in MODELS})
    assert fired == []


def test_canary_fires_when_a_target_is_a_feature(features_lake_factory, tmp_path):
    root = features_lake_factory(signal=0.0)
    lake = open_lake(root)
    last = lake.list_partitions("features", "features")[-1]
    features = feature_columns(lake.read_manifest("features", "features", last).column_names)
    # The last year, two folds of 30 test days: a target among the features shows at once.
    summary = _run(
        root,
        tmp_path / "leaky",
        start=dt.date(2023, 1, 1),
        train=TrainConfig(size="tiny", max_epochs=1, patience=1),
        features=(*features, "target_ret_1d"),
        plan=FoldPlan(n_folds=2, min_train_days=60, test_days=30),
    )
    fired = leakage_canary(summary["oos"])
    assert {line.split(":")[0] for line in fired} == set(MODELS), fired


# ---------------------------------------------------------------- determinism and resume


def _one_fold(panel: Panel):
    first, stop = usable_days(panel)
    plan = FoldPlan(n_folds=1, mode="rolling", min_train_days=60, valid_days=20, test_days=30)
    (fold,) = walk_forward(first, stop, plan, panel.horizons)
    return fold


def _fold_samples(p: Panel, fold) -> Samples:
    samples = Samples(p, Normaliser.fit(p.x, sample_rows(p, fold.train), p.features), GraphConfig())
    samples.fit_target_scale(fold.train)
    return samples


def test_test_rows_never_reach_the_trained_weights(features_lake_factory):
    """Fixed seed, CPU: changing every feature and target of the fold's test days leaves the trained
    weights (started from the fold's ridge, as runs do) bit-identical; changing its training days
    does not (so the comparison can fail), nor does another seed (the seed is used)."""
    panel = load_panel(open_lake(features_lake_factory()), START, END, (1, 5, 10, 20))
    fold = _one_fold(panel)

    def trained_weights(p: Panel, seed: int = 0) -> dict[str, bytes]:
        samples = _fold_samples(p, fold)
        train, valid = sample_rows(p, fold.train), sample_rows(p, fold.valid)
        ridge = Ridge().fit(samples, train, valid, seed=0, threads=2)
        cfg = TrainConfig(size="tiny", max_epochs=2, patience=2)
        net = train_network(samples, fold, cfg, seed=seed, linear_start=ridge.weights)
        return {k: v.numpy().tobytes() for k, v in net.model.state_dict().items()}

    def perturbed(block: Block, seed: int) -> Panel:
        rng = np.random.default_rng(seed)
        x, y = panel.x.copy(), panel.targets.copy()
        x[block.start : block.stop] += rng.normal(0, 3, x[block.start : block.stop].shape).astype(np.float32)
        y[block.start : block.stop] += rng.normal(0, 0.05, y[block.start : block.stop].shape)
        return dataclasses.replace(panel, x=x, targets=y)

    reference = trained_weights(panel)
    assert trained_weights(perturbed(fold.test, 1)) == reference
    assert trained_weights(perturbed(fold.train, 2)) != reference
    assert trained_weights(panel, seed=5) != reference  # the seed is used


def test_a_ridge_start_is_kept_when_training_does_not_beat_it(features_lake_factory):
    """The start is scored on validation as epoch 0: a training that only harms (a learning rate
    of 1) keeps the ridge itself, whose forecasts the network then gives to the last digit."""
    panel = load_panel(open_lake(features_lake_factory()), START, END, (1, 5, 10, 20))
    fold = _one_fold(panel)
    samples = _fold_samples(panel, fold)
    train, valid, test = (sample_rows(panel, b) for b in (fold.train, fold.valid, fold.test))
    ridge = Ridge().fit(samples, train, valid, seed=0, threads=2)
    cfg = TrainConfig(size="tiny", max_epochs=2, patience=2, lr=1.0, warmup_frac=0.0)
    net = train_network(samples, fold, cfg, seed=0, linear_start=ridge.weights)
    assert [e.epoch for e in net.history] == [0, 1, 2]
    assert net.best_epoch == 0, [(e.epoch, e.valid_rank_ic) for e in net.history]
    assert all(e.valid_rank_ic < net.history[0].valid_rank_ic for e in net.history[1:])
    np.testing.assert_allclose(
        predict_network(net.model, samples, test, "cpu"), ridge.predict(samples, test), rtol=1e-4, atol=1e-5
    )


#: Two short folds over 2023-04..12: 60 and 83 training days, 2 x 20 embargo, 20 validation and 23 test
#: days; two horizons (what the CLI does with a run does not depend on how many it trains).
SHORT = [
    "--start",
    "2023-04-01",
    "--end",
    "2023-12-31",
    "--folds",
    "2",
    "--min-train-days",
    "60",
    "--valid-days",
    "20",
    "--size",
    "tiny",
    "--max-epochs",
    "2",
    "--horizons",
    "1,5",
    "--threads",
    "2",
]


def _cli(args: list[str], **kw) -> subprocess.Popen:
    return subprocess.Popen(
        [GOGOOKU3, "train", *args],
        env=isolated(os.environ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


def _cli_run(args: list[str]) -> subprocess.CompletedProcess:
    p = _cli(args)
    out, err = p.communicate(timeout=900)
    return subprocess.CompletedProcess(p.args, p.returncode, out, err)


def _metrics(summary_path: Path) -> dict:
    s = json.loads(summary_path.read_text())
    return {"oos": s["oos"], "folds": [f["metrics"] for f in s["folds"]]}


def test_the_cli_trains_and_writes_its_summary(features_lake_factory, tmp_path):
    """The ``train`` command end to end. Its determinism across processes (same seed, same metrics)
    is proven by the killed-and-resumed run below, whose two folds come from two other processes and
    must equal this run's; that the seed matters, by test_test_rows_never_reach_the_trained_weights."""
    root = str(features_lake_factory())
    a = _cli_run(
        [
            *SHORT,
            "--lake",
            root,
            "--out",
            str(tmp_path / "a"),
            "--device",
            "cpu",
            "--summary-json",
            str(tmp_path / "s.json"),
        ]
    )
    assert a.returncode == 0, a.stderr
    assert "walk-forward folds" in a.stderr and "out-of-sample" in a.stderr
    assert json.loads((tmp_path / "s.json").read_text()) == json.loads(
        (tmp_path / "a" / "summary.json").read_text()
    )
    # the killed-and-resumed run below compares against this run
    shutil.copytree(tmp_path / "a", tmp_path.parent / "uninterrupted_reference", dirs_exist_ok=True)


def test_a_killed_run_resumes_at_the_first_unfinished_fold(features_lake_factory, tmp_path):
    root = str(features_lake_factory())
    reference = tmp_path.parent / "uninterrupted_reference"
    if not reference.exists():  # run alone: make the reference here
        ref = _cli_run([*SHORT, "--lake", root, "--out", str(reference), "--device", "cpu"])
        assert ref.returncode == 0, ref.stderr
    out = tmp_path / "killed"
    args = [*SHORT, "--lake", root, "--out", str(out), "--device", "cpu"]
    p = _cli(args)
    done0 = out / "folds" / "fold_0" / "done.json"
    deadline = time.monotonic() + 600
    while not done0.exists():
        assert p.poll() is None, p.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert not (out / "folds" / "fold_1" / "done.json").exists() and not (out / "summary.json").exists()
    again = _cli_run(args)
    assert again.returncode == 0, again.stderr
    assert "fold 0: finished earlier, resumed" in again.stderr
    assert _metrics(out / "summary.json") == _metrics(reference / "summary.json")
    # other arguments on the same --out are refused, not mixed in
    other = _cli_run([*SHORT, "--lake", root, "--out", str(out), "--device", "cpu", "--seed", "9"])
    assert other.returncode != 0 and "holds a run with other arguments" in other.stderr


# ---------------------------------------------------------------- bad input, before training


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--start", "2023-12-31", "--end", "2023-01-01"], "is after end"),
        (["--start", "2023-06-01", "--end", "2023-12-31"], "4 fold(s) need at least"),
        (
            ["--start", "2022-01-01", "--end", "2023-12-31", "--horizons", "1,7"],
            "no target column (target_ret_7d)",
        ),
        (["--start", "2022-01-01", "--end", "2024-02-01"], "is missing"),
        (["--start", "2022-01-01", "--end", "2023-12-31", "--horizons", "1,x"], "'x' is not a positive"),
        (["--start", "2022-01-01", "--end", "2023-12-31", "--size", "huge"], "--size 'huge'"),
        (
            ["--start", "2022-01-01", "--end", "2023-12-31", "--embargo", "5"],
            "shorter than the longest horizon",
        ),
        (
            ["--start", "2022-01-01", "--end", "2023-12-31", "--rank-weight", "-1"],
            "rank_weight -1.0 is out of range",
        ),
    ],
)
def test_bad_input_exits_before_training(features_lake_factory, tmp_path, args, message):
    r = _cli_run([*args, "--lake", str(features_lake_factory()), "--out", str(tmp_path / "o")])
    assert r.returncode != 0
    assert message in r.stderr, r.stderr
    assert not (tmp_path / "o" / "folds").exists() or not any((tmp_path / "o" / "folds").iterdir())
