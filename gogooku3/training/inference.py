"""The served network: a saved ``model/`` folder (what a walk-forward run writes under ``--out`` and
the model registry keeps) loaded back and run on lake days.

A folder holds ``weights.pt`` (the state dict), ``model_config.json``, ``normaliser.json`` and
``target_scale.json`` (the fold's training statistics), ``features.json`` (the input columns, in
order), ``graph.json`` and ``train_config.json`` (with the fold's train/valid/test dates). Inputs are
rebuilt exactly as in training: the same features in the same order, normalised with the training
days' statistics, the day graph from returns up to the day itself.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from gogooku3.calendar import trading_days
from gogooku3.training.dataset import DATASET, LAYER, DatasetError, load_panel
from gogooku3.training.graph import GraphConfig
from gogooku3.training.normalise import Normaliser

MODEL_FILES = (
    "weights.pt",
    "model_config.json",
    "normaliser.json",
    "target_scale.json",
    "features.json",
    "graph.json",
    "train_config.json",
)


class ModelFolderError(ValueError):
    """A model folder is incomplete or unreadable; the message names the folder and the file."""


@dataclass(frozen=True)
class SavedNetwork:
    folder: Path
    model_config: Any  # ModelConfig
    features: tuple[str, ...]
    graph: GraphConfig
    normaliser: Normaliser
    target_scale: np.ndarray  # (H,) per horizon, the fold's training excess-return std
    train_config: dict

    @classmethod
    def load(cls, folder: str | Path) -> SavedNetwork:
        from gogooku3.model import ModelConfig

        folder = Path(folder)
        missing = [name for name in MODEL_FILES if not (folder / name).is_file()]
        if missing:
            raise ModelFolderError(f"model folder {folder} lacks {', '.join(missing)}")
        try:
            mcfg = ModelConfig.from_dict(json.loads((folder / "model_config.json").read_text()))
            scale = json.loads((folder / "target_scale.json").read_text())
            return cls(
                folder=folder,
                model_config=mcfg,
                features=tuple(json.loads((folder / "features.json").read_text())),
                graph=GraphConfig(**json.loads((folder / "graph.json").read_text())),
                normaliser=Normaliser.from_json((folder / "normaliser.json").read_text()),
                target_scale=np.array([scale[f"{h}d"] for h in mcfg.horizons], dtype=np.float32),
                train_config=json.loads((folder / "train_config.json").read_text()),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise ModelFolderError(f"model folder {folder}: {type(exc).__name__}: {exc}") from None

    @property
    def horizons(self) -> tuple[int, ...]:
        return tuple(self.model_config.horizons)

    @property
    def seen_through(self) -> dt.date | None:
        """The last day the network learnt from (its validation block's end: early stopping read
        it), None for a folder written before the dates were kept."""
        end = self.train_config.get("valid_end")
        return dt.date.fromisoformat(end) if end else None

    def network(self, device: str = "cpu"):
        """The ``ATFTGATFAN`` with the folder's weights, in eval mode on ``device``."""
        import torch

        from gogooku3.model import ATFTGATFAN

        model = ATFTGATFAN(self.model_config)
        state = torch.load(self.folder / "weights.pt", map_location="cpu", weights_only=True)
        model.load_state_dict(state)
        return model.to(device).eval()

    def lookback_days(self) -> int:
        """Trading days of history a prediction on day D reads: its window and the graph's."""
        return self.model_config.seq_len + self.graph.window

    def predict(
        self, lake: Any, days: Sequence[dt.date], *, device: str = "cpu", model: Any = None, seed: int = 0
    ) -> pl.DataFrame:
        """(Date, Code, pred_ret_{h}d) for every code with a full window on each of ``days``
        (features/features of the lake, from the lookback before the first day). ``model``: an
        already built network (e.g. loaded from the registry) instead of :meth:`network`'s."""
        from gogooku3.training.samples import Samples
        from gogooku3.training.trainer import predict_network
        from gogooku3.training.walkforward import prediction_frame

        days = sorted(set(days))
        if not days:
            raise ValueError("no day to predict")
        first = _lookback_start(lake, days[0], self.lookback_days())
        panel = load_panel(lake, first, days[-1], self.horizons, features=self.features)
        samples = Samples(panel, self.normaliser, self.graph, seq_len=self.model_config.seq_len)
        samples.target_scale = self.target_scale
        rows = []
        for day in days:
            t = panel.day_index(day)
            codes = panel.eligible(t, samples.seq_len)
            if len(codes):
                rows.append((t, codes))
        net = self.network(device) if model is None else model
        pred = predict_network(net, samples, rows, device, seed)
        frame = prediction_frame(panel, rows, -1, "served", pred, self.target_scale)
        return frame.drop("model", "fold")


def _lookback_start(lake: Any, first: dt.date, lookback: int) -> dt.date:
    """The trading day ``lookback`` trading days before ``first``, or the lake's first features day
    when it holds less history than that."""
    calendar = trading_days(first - dt.timedelta(days=2 * lookback + 30), first)
    start = calendar[max(0, len(calendar) - 1 - lookback)]
    held = [d for d in lake.list_partitions(LAYER, DATASET) if d <= first]
    if not held:
        raise DatasetError(f"{LAYER}/{DATASET} in lake {lake.uri} has no partition on or before {first}")
    return max(start, min(held))
