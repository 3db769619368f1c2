"""The baselines on a small synthetic panel whose answer is known: ridge recovers a linear signal,
LightGBM learns it too, and the best single feature is the informative one with its sign, not a
feature that ranks the codes well on a few lucky days only."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from gogooku3.calendar import trading_days
from gogooku3.training.baselines import BestFeature, LightGBM, Ridge
from gogooku3.training.dataset import Panel
from gogooku3.training.folds import Block
from gogooku3.training.graph import GraphConfig
from gogooku3.training.normalise import Normaliser
from gogooku3.training.rankic import daily_rank_ic
from gogooku3.training.samples import Samples, sample_rows

T, N = 140, 80
FEATURES = ("ret_1d", "signal", "noise", "lucky", "flag")
TRAIN, VALID, TEST = Block(20, 80), Block(80, 110), Block(110, 140)


@pytest.fixture(scope="module")
def samples() -> Samples:
    """target = 0.5 * signal + noise; ``lucky`` equals the target on 3 training days and is missing
    on every other day; ``flag`` is 1 for one code on a few days, else 0."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(T, N, len(FEATURES))).astype(np.float32)
    y = (0.5 * x[:, :, 1] + rng.normal(size=(T, N))).astype(np.float32)
    x[:, :, 3] = np.nan
    for t in (25, 40, 55):
        x[t, :, 3] = y[t]
    x[:, :, 4] = 0.0
    x[[30, 31, 32], 0, 4] = 1.0
    panel = Panel(
        days=tuple(trading_days(dt.date(2023, 1, 4), dt.date(2023, 12, 29))[:T]),
        codes=tuple(f"{1000 + i}0" for i in range(N)),
        features=FEATURES,
        horizons=(1,),
        x=x,
        present=np.ones((T, N), dtype=bool),
        targets=y[:, :, None],
        sector=np.zeros(N, dtype=np.int32),
        sectors=("0050",),
    )
    s = Samples(panel, Normaliser.fit(panel.x, sample_rows(panel, TRAIN), FEATURES), GraphConfig())
    s.fit_target_scale(TRAIN)
    return s


def _test_rank_ic(samples: Samples, fitted) -> float:
    rows = sample_rows(samples.panel, TEST)
    y = np.concatenate([samples.excess[t, c][:, 0] for t, c in rows])
    return daily_rank_ic(fitted.predict(samples, rows)[:, 0], y, [len(c) for _, c in rows])


def _fit(model, samples: Samples):
    train, valid = sample_rows(samples.panel, TRAIN), sample_rows(samples.panel, VALID)
    return model.fit(samples, train, valid, seed=0, threads=1)


def test_best_feature_is_the_informative_one_not_a_lucky_sparse_one(samples):
    fitted = _fit(BestFeature(), samples)
    ((name, sign, train_ic),) = fitted.chosen
    assert (name, sign) == ("signal", 1.0) and 0.3 < train_ic < 0.6
    # negated, the same feature is chosen with the other sign
    samples.panel.x[:, :, 1] *= -1
    try:
        assert _fit(BestFeature(), samples).chosen[0][:2] == ("signal", -1.0)
    finally:
        samples.panel.x[:, :, 1] *= -1


def test_best_feature_predicts_the_chosen_feature_times_its_sign(samples):
    fitted = _fit(BestFeature(), samples)
    rows = sample_rows(samples.panel, TEST)
    raw = np.concatenate([samples.panel.x[t, c][:, 1] for t, c in rows])
    pred = fitted.predict(samples, rows)[:, 0]
    assert np.corrcoef(pred, raw)[0, 1] == pytest.approx(1.0)
    assert _test_rank_ic(samples, fitted) > 0.3


def test_ridge_recovers_the_linear_signal(samples):
    fitted = _fit(Ridge(), samples)
    w = dict(zip(FEATURES, fitted.weights[:-1, 0], strict=True))
    assert w["signal"] > 10 * max(abs(w["noise"]), abs(w["ret_1d"]))
    assert _test_rank_ic(samples, fitted) > 0.3


def test_lightgbm_learns_the_signal(samples):
    assert _test_rank_ic(samples, _fit(LightGBM(), samples)) > 0.25


@pytest.mark.parametrize("ties", [False, True])
def test_columns_rank_corr_is_each_columns_spearman_on_its_own_present_rows(ties):
    """The one-pass per-column Spearman (BestFeature's inner loop) against the plain definition:
    each column's present rows ranked on their own (average ties), then Pearson of the ranks."""
    from gogooku3.training.rankic import columns_rank_corr, corr, rank

    rng = np.random.default_rng(11)
    for _ in range(50):
        n, F = int(rng.integers(8, 60)), int(rng.integers(1, 8))
        x = rng.integers(0, 5, (n, F)).astype(float) if ties else rng.normal(size=(n, F))
        x[rng.random((n, F)) < rng.random() * 0.6] = np.nan
        x[:, 0] = 2.0  # a constant column: no correlation
        y = rng.integers(0, 4, n).astype(float) if ties else rng.normal(size=n)
        got = columns_rank_corr(x, y)
        for f in range(F):
            ok = np.isfinite(x[:, f])
            want = corr(rank(x[ok, f]), rank(y[ok])) if ok.sum() >= 10 else np.nan
            np.testing.assert_allclose(got[f], want, rtol=1e-12, atol=1e-12, equal_nan=True)
