"""Training of ATFT-GAT-FAN on one fold: epochs over shuffled training days, early stopping on
validation RankIC at the shortest horizon (1d by default).

One optimiser step per batch (one day's cross-section chunk). AdamW, linear warm-up then cosine
decay over the planned steps, gradient norm clipped at 0.8, bf16 autocast on CUDA and fp32 on CPU.
Every random draw is seeded from (seed, fold[, epoch]) alone, so a fold trains the same whether
the run started at fold 0 or resumed at it.
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field

import numpy as np

from gogooku3.redaction import library_logger
from gogooku3.training.folds import Fold
from gogooku3.training.rankic import daily_rank_ic
from gogooku3.training.samples import DayBatch, Rows, Samples

log = library_logger(__name__)

DEFAULT_PATIENCE = 9
INITS = ("ridge", "random")


@dataclass(frozen=True)
class TrainConfig:
    """How one fold's network is trained; validated on creation (a bad value names itself)."""

    size: str = "base"
    max_epochs: int = 30
    patience: int = DEFAULT_PATIENCE
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup_frac: float = 0.05
    grad_clip: float = 0.8
    #: Weight of the soft-rank correlation auxiliary (0: pinball loss only). 0.5 by measurement: on
    #: the CI market (tiny, 4 folds, at most 3-4 epochs) the network's out-of-sample RankIC@1d was
    #: 0.65-0.73 of the oracle with the pinball loss alone (learning rates 2e-3 and 5e-3) and
    #: 0.82-0.84 with this term (weights 0.5 and 1.0, learning rates 1e-3 and 2e-3).
    rank_weight: float = 0.5
    #: How the network's weights start: as the fold's ridge (``ridge``: its wide path holds the
    #: ridge weights and the heads' last layers are zero, scored on validation as epoch 0), or from
    #: a random initialisation alone (``random``).
    init: str = "ridge"
    device: str = "cpu"

    def __post_init__(self) -> None:
        from gogooku3.model.config import SIZES

        if self.size not in SIZES:
            raise ValueError(f"size {self.size!r}: expected one of {', '.join(SIZES)}")
        if self.init not in INITS:
            raise ValueError(f"init {self.init!r}: expected one of {', '.join(INITS)}")
        for name in ("max_epochs", "patience"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        checks = {
            "lr": lambda v: v > 0,
            "grad_clip": lambda v: v > 0,
            "weight_decay": lambda v: v >= 0,
            "rank_weight": lambda v: v >= 0,
            "warmup_frac": lambda v: 0 <= v < 1,
        }
        for name, ok in checks.items():
            value = getattr(self, name)
            if not (math.isfinite(value) and ok(value)):
                raise ValueError(f"{name} {value!r} is out of range")

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
    parameters: int = 0

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
    with torch.no_grad(), _cpu_runtime(device), _autocast(device):
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
    """bf16 autocast on CUDA; fp32 (no autocast) on CPU."""
    import torch

    if device.startswith("cuda"):
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


_cpu_depth = 0  # nesting depth of _cpu_runtime (training runs prediction inside it)


@contextlib.contextmanager
def _cpu_runtime(device: str) -> Iterator[None]:
    """How the network runs on a CPU, both measured on the CI market (two cores):

    * numpy's BLAS (the day graph's correlation product) at one thread: its idle threads spin
      after each call and took the cores from torch's, doubling a training step (130 ms -> 62 ms);
    * subnormal floats flushed to zero: the gates' backward pass produces them, and the CPU's slow
      path for them cost ~20% of a step. Far below any value that matters, deterministic either way.

    Restored on exit of the outermost use; nothing changes on CUDA.
    """
    global _cpu_depth
    import torch
    from threadpoolctl import threadpool_limits

    if device.startswith("cuda"):
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        if _cpu_depth == 0:
            torch.set_flush_denormal(True)
        _cpu_depth += 1
        try:
            yield
        finally:
            _cpu_depth -= 1
            if _cpu_depth == 0:
                torch.set_flush_denormal(False)


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
    linear_start: np.ndarray | None = None,
) -> TrainedNetwork:
    """A fresh network trained on ``fold``'s training days, the weights of its best epoch by
    validation RankIC kept; reads nothing of the fold's test days.

    ``linear_start`` ((F + 1, H), e.g. the fold's ridge weights) starts the network as that linear
    model (:meth:`~gogooku3.model.atft.ATFTGATFAN.start_from_linear`), and the start is scored on
    validation as epoch 0: training keeps what it adds only where validation says it helps."""
    import torch

    from gogooku3.model import ATFTGATFAN, ModelConfig, parameter_count

    panel = samples.panel
    torch.manual_seed(seed * 1000 + fold.index)
    mcfg = ModelConfig.for_size(cfg.size, len(panel.features), tuple(panel.horizons), seq_len=samples.seq_len)
    model = ATFTGATFAN(mcfg)
    if linear_start is not None:
        model.start_from_linear(torch.as_tensor(linear_start, dtype=torch.float32))
    model = model.to(cfg.device)
    log.info(
        "fold %d: atft_gat_fan %s, %d parameters, %d features, on %s",
        fold.index,
        cfg.size,
        parameter_count(model),
        len(panel.features),
        cfg.device,
    )
    train_rows, valid_rows = samples.rows(fold.train), samples.rows(fold.valid)
    step = _Stepper(model, samples, train_rows, cfg, seed)
    watch = early_stop_horizon(tuple(panel.horizons))
    valid_sizes = [len(c) for _, c in valid_rows]
    valid_target = (
        np.concatenate([samples.excess[t, c][:, watch] for t, c in valid_rows]) if valid_rows else np.zeros(0)
    )

    def valid_rank_ic() -> float:
        pred = predict_network(model, samples, valid_rows, cfg.device, seed)
        return daily_rank_ic(pred[:, watch], valid_target, valid_sizes) if len(pred) else float("nan")

    best_ic, best_epoch, best_state, stale = -math.inf, 0, copy.deepcopy(model.state_dict()), 0
    history: list[EpochLog] = []
    with _cpu_runtime(cfg.device):
        if linear_start is not None:
            t0 = time.perf_counter()
            ic = valid_rank_ic()
            history.append(EpochLog(0, float("nan"), ic, time.perf_counter() - t0))
            if progress is not None:
                progress(fold.index, history[-1])
            if math.isfinite(ic):
                best_ic = ic
        for epoch in range(1, cfg.max_epochs + 1):
            t0 = time.perf_counter()
            # Day order is shuffled within the training fold only, from (seed, fold, epoch).
            order = np.random.default_rng([seed, fold.index, epoch]).permutation(len(train_rows))
            loss = step.epoch([train_rows[k] for k in order])
            ic = valid_rank_ic()
            entry = EpochLog(epoch, loss, ic, time.perf_counter() - t0)
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
        train_samples=step.samples_seen,
        train_seconds=step.seconds,
        parameters=parameter_count(model),
    )


class _Stepper:
    """The optimisation of one fold's network: AdamW, linear warm-up then cosine decay over the
    planned steps (one per batch), the pinball (+ soft-rank) loss, gradient clipping."""

    def __init__(self, model, samples: Samples, train_rows: Rows, cfg: TrainConfig, seed: int) -> None:
        import torch

        from gogooku3.model.losses import horizon_weights

        self.model, self.samples, self.cfg, self.seed = model, samples, cfg, seed
        n_batches = sum(len(samples.chunks(t, c, seed)) for t, c in train_rows)
        total = max(1, n_batches * cfg.max_epochs)
        warmup = max(1, int(total * cfg.warmup_frac))
        self.opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.sched = torch.optim.lr_scheduler.LambdaLR(
            self.opt,
            lambda s: (
                (s + 1) / warmup
                if s < warmup
                else 0.5 * (1 + math.cos(math.pi * min(1.0, (s - warmup) / max(1, total - warmup))))
            ),
        )
        self.weights = horizon_weights(samples.panel.horizons).to(cfg.device)
        quantiles = model.cfg.quantiles
        self.median = quantiles.index(0.5) if 0.5 in quantiles else len(quantiles) // 2
        self.samples_seen, self.seconds = 0, 0.0

    def epoch(self, rows: Rows) -> float:
        """One pass over ``rows`` in the order given; the mean training loss."""
        import torch

        from gogooku3.model.losses import training_loss

        t0 = time.perf_counter()
        self.model.train()
        device, losses = self.cfg.device, []
        for batch in self.samples.batches(rows, self.seed):
            target = torch.from_numpy(batch.target).to(device)
            if not torch.isfinite(target).any():
                continue
            with _autocast(device):
                out = self.model(*_tensors(batch, device))
            loss = training_loss(
                out.float(),
                target,
                self.model.cfg.quantiles,
                self.weights,
                rank_weight=self.cfg.rank_weight,
                median_index=self.median,
            )
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
            self.opt.step()
            self.sched.step()
            losses.append(float(loss.detach()))
            self.samples_seen += len(batch.codes)
        self.seconds += time.perf_counter() - t0
        return float(np.mean(losses)) if losses else float("nan")
