"""Training of ATFT-GAT-FAN on one fold: epochs over shuffled training days, early stopping on
validation RankIC at the shortest horizon (1d by default).

One optimiser step per batch (one day's cross-section chunk). AdamW, linear warm-up then cosine
decay over the planned steps, gradient norm clipped at 0.8, bf16 autocast on CUDA and fp32 on CPU.
Every random draw is seeded from (seed, fold[, epoch]) alone, so a fold trains the same whether
the run started at fold 0 or resumed at it.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np

from gogooku3.training.folds import Fold
from gogooku3.training.rankic import daily_rank_ic
from gogooku3.training.samples import DayBatch, Rows, Samples

DEFAULT_PATIENCE = 9


@dataclass(frozen=True)
class TrainConfig:
    size: str = "tiny"
    max_epochs: int = 30
    patience: int = DEFAULT_PATIENCE
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup_frac: float = 0.05
    grad_clip: float = 0.8
    #: Weight of the soft-rank correlation auxiliary (0: pinball loss only).
    rank_weight: float = 0.0
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.max_epochs < 1:
            raise ValueError(f"max_epochs must be >= 1, got {self.max_epochs}")
        if self.patience < 1:
            raise ValueError(f"patience must be >= 1, got {self.patience}")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class EpochLog:
    epoch: int
    loss: float
    valid_rank_ic: float
    seconds: float


@dataclass
class TrainedNetwork:
    model: object  # ATFTGATFAN
    model_config: object  # ModelConfig
    best_epoch: int
    best_valid_rank_ic: float
    history: list[EpochLog] = field(default_factory=list)
    train_samples: int = 0
    train_seconds: float = 0.0

    @property
    def samples_per_s(self) -> float:
        return self.train_samples / self.train_seconds if self.train_seconds else float("nan")


ProgressFn = Callable[[int, EpochLog], None]


def _tensors(batch: DayBatch, device: str):
    import torch

    def t(a: np.ndarray, dtype=torch.float32):
        return torch.from_numpy(a).to(device=device, dtype=dtype)

    return (
        t(batch.x),
        t(batch.missing),
        t(batch.edge_index, torch.long),
        t(batch.edge_attr),
    )


def predict_network(model, samples: Samples, rows: Rows, device: str, seed: int = 0) -> np.ndarray:
    """(n, H) point forecasts (median quantile) in scaled-excess units for ``rows``, concatenated in
    row order (codes of a day in the order given)."""
    import torch

    model.eval()
    out = []
    with torch.no_grad(), _autocast(device):
        for t, codes in rows:
            day = np.full((len(codes), len(samples.panel.horizons)), np.nan, dtype=np.float32)
            pos = {c: k for k, c in enumerate(codes.tolist())}
            for chunk in samples.chunks(t, codes, seed):
                batch = samples.batch(t, chunk)
                pred = model.point_forecast(model(*_tensors(batch, device))).float().cpu().numpy()
                day[[pos[c] for c in chunk.tolist()]] = pred
            out.append(day)
    return np.concatenate(out) if out else np.zeros((0, len(samples.panel.horizons)), np.float32)


def _autocast(device: str):
    import contextlib

    import torch

    if device.startswith("cuda"):
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def early_stop_horizon(horizons: tuple[int, ...]) -> int:
    """Index of the horizon early stopping watches: 1d if present, else the shortest."""
    return horizons.index(1) if 1 in horizons else int(np.argmin(horizons))


def train_network(
    samples: Samples,
    fold: Fold,
    cfg: TrainConfig,
    *,
    seed: int,
    progress: ProgressFn | None = None,
) -> TrainedNetwork:
    import torch

    from gogooku3.model import ATFTGATFAN, ModelConfig
    from gogooku3.model.losses import horizon_weights, training_loss

    panel = samples.panel
    torch.manual_seed(seed * 1000 + fold.index)
    mcfg = ModelConfig.for_size(cfg.size, len(panel.features), tuple(panel.horizons), seq_len=samples.seq_len)
    model = ATFTGATFAN(mcfg).to(cfg.device)
    train_rows, valid_rows = samples.rows(fold.train), samples.rows(fold.valid)
    n_batches = sum(len(samples.chunks(t, c, seed)) for t, c in train_rows)
    total_steps = max(1, n_batches * cfg.max_epochs)
    warmup = max(1, int(total_steps * cfg.warmup_frac))
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt,
        lambda s: (
            (s + 1) / warmup
            if s < warmup
            else 0.5 * (1 + math.cos(math.pi * min(1.0, (s - warmup) / max(1, total_steps - warmup))))
        ),
    )
    weights = horizon_weights(panel.horizons).to(cfg.device)
    quantiles = mcfg.quantiles
    median = quantiles.index(0.5) if 0.5 in quantiles else len(quantiles) // 2
    watch = early_stop_horizon(tuple(panel.horizons))
    valid_sizes = [len(c) for _, c in valid_rows]
    valid_target = (
        np.concatenate([samples.excess[t, c][:, watch] for t, c in valid_rows]) if valid_rows else np.zeros(0)
    )

    best_ic, best_epoch, best_state, stale = -math.inf, 0, copy.deepcopy(model.state_dict()), 0
    history: list[EpochLog] = []
    seen, busy = 0, 0.0
    for epoch in range(1, cfg.max_epochs + 1):
        t0 = time.perf_counter()
        model.train()
        order = np.random.default_rng([seed, fold.index, epoch]).permutation(len(train_rows))
        losses = []
        for k in order:
            t, codes = train_rows[k]
            for batch in samples.batches([(t, codes)], seed):
                target = torch.from_numpy(batch.target).to(cfg.device)
                if not torch.isfinite(target).any():
                    continue
                with _autocast(cfg.device):
                    out = model(*_tensors(batch, cfg.device))
                loss, _ = training_loss(
                    out.float(), target, quantiles, weights, rank_weight=cfg.rank_weight, median_index=median
                )
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                opt.step()
                sched.step()
                losses.append(float(loss.detach()))
                seen += len(batch.codes)
        busy += time.perf_counter() - t0
        pred = predict_network(model, samples, valid_rows, cfg.device, seed)
        ic = daily_rank_ic(pred[:, watch], valid_target, valid_sizes) if len(pred) else float("nan")
        entry = EpochLog(
            epoch, float(np.mean(losses)) if losses else float("nan"), ic, time.perf_counter() - t0
        )
        history.append(entry)
        if progress is not None:
            progress(fold.index, entry)
        if math.isfinite(ic) and ic > best_ic:
            best_ic, best_epoch, stale = ic, epoch, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            stale += 1
            if stale >= cfg.patience:
                break
    model.load_state_dict(best_state)
    return TrainedNetwork(
        model=model,
        model_config=mcfg,
        best_epoch=best_epoch,
        best_valid_rank_ic=best_ic,
        history=history,
        train_samples=seen,
        train_seconds=busy,
    )
