"""MLflow: a walk-forward run's record (:mod:`.runlog`) and the model registry's champion/challenger
(:mod:`.registry`). The shell around the pure training library: everything here talks to an MLflow
tracking server over HTTP (:class:`gogooku3.config.MlflowSettings`); the figures and the rule come
from :mod:`gogooku3.training`.
"""

from gogooku3.tracking.registry import CHALLENGER, CHAMPION, MODEL_NAME

__all__ = ["CHALLENGER", "CHAMPION", "MODEL_NAME"]
