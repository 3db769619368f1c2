"""ATFT-GAT-FAN in pure torch + torch_geometric (no Airflow, no I/O): the network
:class:`ATFTGATFAN`, its :class:`ModelConfig` and sizes, and its training losses.

The names are resolved lazily, so ``gogooku3.model.config`` (sizes, settings) imports without torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the same names, eagerly, for type checkers and editors
    from gogooku3.model.atft import ATFTGATFAN, parameter_count
    from gogooku3.model.config import SIZES, ModelConfig
    from gogooku3.model.losses import (
        HORIZON_WEIGHTS,
        horizon_weights,
        pinball_loss,
        soft_rank,
        soft_rank_correlation,
        training_loss,
    )

_EXPORTS = {
    "ATFTGATFAN": "atft",
    "parameter_count": "atft",
    "SIZES": "config",
    "ModelConfig": "config",
    "HORIZON_WEIGHTS": "losses",
    "horizon_weights": "losses",
    "pinball_loss": "losses",
    "soft_rank": "losses",
    "soft_rank_correlation": "losses",
    "training_loss": "losses",
}

__all__ = [
    "ATFTGATFAN",
    "HORIZON_WEIGHTS",
    "SIZES",
    "ModelConfig",
    "horizon_weights",
    "parameter_count",
    "pinball_loss",
    "soft_rank",
    "soft_rank_correlation",
    "training_loss",
]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
