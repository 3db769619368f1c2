"""Walk-forward training of ATFT-GAT-FAN and its baselines (pure library, no Airflow).

* :mod:`~gogooku3.training.dataset` - ``features/features`` partitions -> one dense :class:`Panel`.
* :mod:`~gogooku3.training.folds` - walk-forward folds (train, embargo, validation, embargo, test).
* :mod:`~gogooku3.training.normalise` - the per-feature robust normaliser, fit on training days.
* :mod:`~gogooku3.training.graph` - the day graph of correlated peers, past returns only.
* :mod:`~gogooku3.training.samples` - samples, excess targets, one-day batches.
* :mod:`~gogooku3.training.trainer` - the network's training loop and early stopping.
* :mod:`~gogooku3.training.baselines` - ridge, LightGBM and the best single feature.
* :mod:`~gogooku3.training.metrics` / :mod:`~gogooku3.training.plots` - IC, RankIC, ICIR, deciles...
* :mod:`~gogooku3.training.checks` - the planted-alpha oracle and the leakage canary.
* :mod:`~gogooku3.training.walkforward` - a whole run, resumable, as ``gogooku3 train`` runs it.
"""
