"""Per-feature robust normalisation, fit on a fold's training days only.

The features arrive already cross-sectionally transformed where the catalogue says so (z-scores,
ranks); this step puts every feature on one scale for the networks: ``(x - median) / scale`` with
``scale = IQR / 1.349`` (the standard deviation of a normal with that IQR; the standard deviation
when the IQR is 0, 1 when both are), clipped to +-5, missing -> 0 plus a missing flag the model sees.

It is fit on the training days' rows only and then applied unchanged to validation, test and later
inference, and saved with the model (:meth:`to_json`). The fit reads a deterministic, evenly strided
subset of at most ``max_rows`` training rows, so its cost does not grow with the market.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

CLIP = 5.0
IQR_TO_SIGMA = 1.349
MAX_FIT_ROWS = 400_000


@dataclass(frozen=True)
class Normaliser:
    features: tuple[str, ...]
    centre: np.ndarray  # (F,) float32
    scale: np.ndarray  # (F,) float32, > 0
    clip: float = CLIP

    @classmethod
    def fit(
        cls,
        x: np.ndarray,
        rows: Sequence[tuple[int, np.ndarray]],
        features: Sequence[str],
        *,
        max_rows: int = MAX_FIT_ROWS,
    ) -> Normaliser:
        """Fit on ``x[t, codes]`` for the (day index t, code indices) pairs in ``rows``, which must be
        the training days' samples only."""
        total = sum(len(c) for _, c in rows)
        if total == 0:
            raise ValueError("cannot fit the normaliser: the training days have no sample")
        stride = max(1, -(-total // max_rows))
        picked = []
        offset = 0
        for t, codes in rows:
            # The global stride is kept across days, so the subset is spread evenly over the fold.
            take = codes[(-offset) % stride :: stride]
            offset += len(codes)
            if len(take):
                picked.append(x[t, take])
        sample = np.concatenate(picked).astype(np.float64)
        with warnings.catch_warnings():
            # A feature missing on every training row (a 200-day window in a short fold) gives NaN
            # statistics here and centre 0, scale 1 below: it enters as 0 with its missing flag set.
            warnings.simplefilter("ignore", RuntimeWarning)
            q25, median, q75 = np.nanpercentile(sample, [25, 50, 75], axis=0)
            std = np.nanstd(sample, axis=0)
        scale = (q75 - q25) / IQR_TO_SIGMA
        scale = np.where(np.isfinite(scale) & (scale > 1e-12), scale, std)
        scale = np.where(np.isfinite(scale) & (scale > 1e-12), scale, 1.0)
        centre = np.where(np.isfinite(median), median, 0.0)
        return cls(tuple(features), centre.astype(np.float32), scale.astype(np.float32))

    def transform(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(normalised float32 with missing -> 0, missing flags float32) for any (..., F) array."""
        missing = np.isnan(x)
        z = (x - self.centre) / self.scale
        np.clip(z, -self.clip, self.clip, out=z)
        z[missing] = 0.0
        return z.astype(np.float32, copy=False), missing.astype(np.float32)

    def transform_columns(self, x: np.ndarray, columns: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`transform` for an (..., len(columns)) array holding only those feature columns."""
        part = Normaliser(self.features, self.centre[list(columns)], self.scale[list(columns)], self.clip)
        return part.transform(x)

    def to_json(self) -> str:
        return json.dumps(
            {
                "kind": "robust_median_iqr",
                "clip": self.clip,
                "features": list(self.features),
                "centre": self.centre.tolist(),
                "scale": self.scale.tolist(),
            },
            indent=1,
        )

    @classmethod
    def from_json(cls, text: str) -> Normaliser:
        d = json.loads(text)
        return cls(
            tuple(d["features"]),
            np.asarray(d["centre"], dtype=np.float32),
            np.asarray(d["scale"], dtype=np.float32),
            float(d["clip"]),
        )

    def equals(self, other: Normaliser) -> bool:
        """Bit-identical parameters."""
        return (
            self.features == other.features
            and self.clip == other.clip
            and self.centre.tobytes() == other.centre.tobytes()
            and self.scale.tobytes() == other.scale.tobytes()
        )
