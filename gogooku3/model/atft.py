"""ATFT-GAT-FAN: Adaptive Temporal Fusion Transformer with Graph Attention and Frequency Adaptive
Normalisation, forecasting forward returns for one trading day's cross-section of codes.

(B codes, L steps, F features)
 -> FAN and SAN on each code's sequence, mixed with the raw input (:class:`AdaptiveInputNorm`)
 -> variable selection at every step (values and missing flags)
 -> LSTM + causal temporal attention, last step: (B, hidden)
 -> GATv2 over the day's graph, fused with the temporal vector by a gated residual
 -> one quantile head per horizon: (B, horizons, quantiles),
    plus (``wide``) a linear map of the last day's inputs added to every quantile of its horizon.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from gogooku3.model.config import ModelConfig
from gogooku3.model.layers import (
    AdaptiveInputNorm,
    GraphFusion,
    QuantileHeads,
    TemporalBlock,
    VariableSelectionNetwork,
    WidePath,
)


class ATFTGATFAN(nn.Module):
    """The network, built from a :class:`ModelConfig` (initialised from torch's global RNG, so
    ``torch.manual_seed`` makes it reproducible)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.input_norm = AdaptiveInputNorm(cfg.n_features, cfg.fan_windows, cfg.san_slices)
        self.select = VariableSelectionNetwork(
            cfg.n_features, cfg.var_hidden, cfg.hidden, cfg.dropout, cfg.var_embedding
        )
        self.temporal = TemporalBlock(cfg.hidden, cfg.lstm_layers, cfg.attn_heads, cfg.dropout)
        self.graph = GraphFusion(cfg.hidden, cfg.gat_layers, cfg.gat_heads, cfg.edge_dim, cfg.dropout)
        self.heads = QuantileHeads(cfg.hidden, len(cfg.horizons), len(cfg.quantiles))
        self.wide = WidePath(cfg.n_features, len(cfg.horizons)) if cfg.wide else None

    def forward(self, x: Tensor, missing: Tensor, edge_index: Tensor, edge_attr: Tensor) -> Tensor:
        """x: (B, L, F) float, already normalised, missing values 0; missing: (B, L, F) float/bool,
        1 where the raw value was missing. edge_index: (2, E) long over the B nodes of this batch
        (one trading day's cross-section chunk); edge_attr: (E, edge_dim). Returns (B, n_horizons,
        n_quantiles) predicted forward returns (quantiles not forced to be sorted)."""
        if x.dim() != 3 or x.shape[-1] != self.cfg.n_features:
            raise ValueError(f"x: expected (B, L, {self.cfg.n_features}), got {tuple(x.shape)}")
        if missing.shape != x.shape:
            raise ValueError(f"missing: expected shape {tuple(x.shape)}, got {tuple(missing.shape)}")
        missing = missing.to(x.dtype)
        h, _ = self.select(self.input_norm(x), missing)
        h = self.temporal.last_step(h)
        h = self.graph(h, edge_index, edge_attr.to(h.dtype))
        out = self.heads(h)
        if self.wide is not None:
            out = out + self.wide(x[:, -1], missing[:, -1]).unsqueeze(-1)
        return out

    def start_from_linear(self, weights: Tensor) -> None:
        """Start the network as a given linear model of the last day's inputs: ``weights`` (F + 1, H),
        coefficients on the normalised values (missing = 0) with the intercept last, as
        :class:`~gogooku3.training.baselines.Ridge` fits them. The wide path takes them (missing
        flags 0) and the last layer of every quantile head is zeroed, so that until the first
        optimiser step every quantile of every horizon is exactly that linear forecast; the deep
        path then learns what the linear model leaves, and its gradients reach every layer from the
        first step (the zeroed layers' inputs are not zero)."""
        if self.wide is None:
            raise ValueError("start_from_linear needs the wide path (ModelConfig.wide)")
        F, H = self.cfg.n_features, len(self.cfg.horizons)
        if tuple(weights.shape) != (F + 1, H):
            raise ValueError(f"linear weights: expected ({F + 1}, {H}), got {tuple(weights.shape)}")
        with torch.no_grad():
            linear = self.wide.linear
            linear.weight.zero_()
            linear.weight[:, :F].copy_(weights[:F].T)
            linear.bias.copy_(weights[F])
            for head in self.heads.heads:
                nn.init.zeros_(head[-1].weight)
                nn.init.zeros_(head[-1].bias)

    def point_forecast(self, out: Tensor) -> Tensor:
        """(B, H) from :meth:`forward`'s (B, H, Q): the median quantile, or the mean over the
        quantiles when 0.5 is not one of them."""
        if 0.5 in self.cfg.quantiles:
            return out[..., self.cfg.quantiles.index(0.5)]
        return out.mean(-1)


def parameter_count(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
