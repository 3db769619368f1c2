"""Baselines trained on the same folds as the network, from the last day's features only.

* ``ridge``: linear ridge regression on the normalised features (missing -> 0) per horizon, its
  penalty picked from a grid by validation RankIC.
* ``lightgbm``: gradient-boosted trees (the strongest single model of Qlib's public Alpha158
  table) per horizon on the raw features (trees handle NaN themselves), early-stopped on validation.
* ``best_feature``: the single catalogue feature with the highest absolute mean daily RankIC against
  the horizon's target over the training days (a day it cannot rank the codes on counts 0), times
  the sign of that RankIC.

Each learns the scaled excess targets of :mod:`gogooku3.training.samples` and predicts in the same
units. Every fit reads training rows (and validation rows for model selection) only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gogooku3.training.rankic import columns_rank_corr, daily_rank_ic
from gogooku3.training.samples import Rows, Samples

RIDGE_ALPHAS = (1.0, 10.0, 100.0, 1_000.0, 10_000.0)
MAX_TREE_ROWS = 600_000
LIGHTGBM_PARAMS: dict[str, Any] = {
    "objective": "regression",
    "learning_rate": 0.05,
    "num_leaves": 31,
    "min_data_in_leaf": 200,
    "feature_fraction": 0.8,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "lambda_l2": 1.0,
    "verbosity": -1,
    "deterministic": True,
    "force_row_wise": True,
}
LIGHTGBM_ROUNDS = 400
LIGHTGBM_EARLY_STOP = 30


def _strided(n: int, limit: int) -> np.ndarray:
    return np.arange(0, n, max(1, -(-n // limit)))


@dataclass
class Ridge:
    name = "ridge"
    weights: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (F + 1, H), last row intercept
    alphas: list[float] = field(default_factory=list)

    def fit(self, samples: Samples, train: Rows, valid: Rows, *, seed: int, threads: int) -> Ridge:
        x, y = samples.last_day(train)
        z = self._design(samples, x)
        xv, yv = samples.last_day(valid)
        zv = self._design(samples, xv)
        sizes = [len(c) for _, c in valid]
        gram = z.T @ z
        H = y.shape[1]
        self.weights = np.zeros((z.shape[1], H))
        for h in range(H):
            ok = np.isfinite(y[:, h])
            g = z[ok].T @ z[ok] if not ok.all() else gram
            rhs = z[ok].T @ y[ok, h]
            best = (-np.inf, RIDGE_ALPHAS[0], None)
            for alpha in RIDGE_ALPHAS:
                penalty = alpha * np.eye(z.shape[1])
                penalty[-1, -1] = 0.0  # the intercept is not shrunk
                w = np.linalg.solve(g + penalty, rhs)
                ic = daily_rank_ic(zv @ w, yv[:, h], sizes)
                if best[2] is None or (np.isfinite(ic) and ic > best[0]):
                    best = (ic, alpha, w)
            self.weights[:, h] = best[2]
            self.alphas.append(best[1])
        return self

    def predict(self, samples: Samples, rows: Rows) -> np.ndarray:
        x, _ = samples.last_day(rows)
        return self._design(samples, x) @ self.weights

    @staticmethod
    def _design(samples: Samples, x: np.ndarray) -> np.ndarray:
        z, _ = samples.normaliser.transform(x)
        return np.hstack([z.astype(np.float64), np.ones((len(z), 1))])


@dataclass
class LightGBM:
    name = "lightgbm"
    boosters: list[Any] = field(default_factory=list)

    def fit(self, samples: Samples, train: Rows, valid: Rows, *, seed: int, threads: int) -> LightGBM:
        import lightgbm as lgb

        x, y = samples.last_day(train)
        xv, yv = samples.last_day(valid)
        keep = _strided(len(x), MAX_TREE_ROWS)
        x, y = x[keep], y[keep]
        params = {**LIGHTGBM_PARAMS, "seed": seed, "num_threads": threads}
        for h in range(y.shape[1]):
            ok, okv = np.isfinite(y[:, h]), np.isfinite(yv[:, h])
            names = list(samples.panel.features)
            train_set = lgb.Dataset(x[ok], y[ok, h], feature_name=names, free_raw_data=True)
            valid_set = lgb.Dataset(xv[okv], yv[okv, h], reference=train_set)
            self.boosters.append(
                lgb.train(
                    params,
                    train_set,
                    num_boost_round=LIGHTGBM_ROUNDS,
                    valid_sets=[valid_set],
                    callbacks=[lgb.early_stopping(LIGHTGBM_EARLY_STOP, verbose=False)],
                )
            )
        return self

    def predict(self, samples: Samples, rows: Rows) -> np.ndarray:
        x, _ = samples.last_day(rows)
        return np.stack([b.predict(x, num_iteration=b.best_iteration) for b in self.boosters], axis=1)


@dataclass
class BestFeature:
    name = "best_feature"
    chosen: list[tuple[str, float, float]] = field(default_factory=list)  # (feature, sign, train RankIC)

    def fit(self, samples: Samples, train: Rows, valid: Rows, *, seed: int, threads: int) -> BestFeature:
        panel = samples.panel
        H, F = len(panel.horizons), len(panel.features)
        total = np.zeros((H, F))
        days = np.zeros(H)  # training days with enough known targets, per horizon
        for t, codes in train:
            x = panel.x[t, codes]
            y = samples.excess[t, codes]
            for h in range(H):
                ok_y = np.isfinite(y[:, h])
                if ok_y.sum() < 10:
                    continue
                days[h] += 1
                # Per feature: Spearman over the codes having both values (ranks recomputed on them).
                r = columns_rank_corr(x[ok_y], y[ok_y, h])
                good = np.isfinite(r)
                total[h, good] += r[good]
        # The mean over every training day, a day where the feature cannot rank the codes (missing,
        # or constant like a rarely set flag) counting 0: a feature defined on a few days only must
        # not win on a lucky mean of those few.
        mean = total / np.maximum(days, 1)[:, None]
        for h in range(H):
            f = int(np.argmax(np.abs(mean[h])))
            self.chosen.append((panel.features[f], float(np.sign(mean[h, f]) or 1.0), float(mean[h, f])))
        return self

    def predict(self, samples: Samples, rows: Rows) -> np.ndarray:
        panel = samples.panel
        cols = [panel.feature_index(name) for name, _, _ in self.chosen]
        x = np.concatenate([panel.x[t, c][:, cols] for t, c in rows])
        z, _ = samples.normaliser.transform_columns(x, cols)
        return z * np.array([sign for _, sign, _ in self.chosen])


BASELINES = (Ridge, LightGBM, BestFeature)
