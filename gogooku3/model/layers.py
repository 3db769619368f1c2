"""Building blocks of ATFT-GAT-FAN.

Every normalisation here works within one sample (one code): LayerNorm over its features, FAN and
SAN over its own time steps. Nothing mixes the codes of a cross-section except the graph layers, so
a code's forecast never depends on which other codes share its batch unless an edge says so (and
there is no BatchNorm, whose batch statistics would leak the cross-section into every code).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch_geometric.nn import GATv2Conv

from gogooku3.model.config import VAR_EMBEDDINGS

#: Variance floor of the time normalisations (FAN, SAN), in the inputs' units: they arrive already
#: normalised across the cross-section (unit scale), so a window whose std is below ~0.1 is flat,
#: and maps to ~0 instead of to its rounding noise blown up by 1 / sqrt(tiny).
EPS = 1e-2


class GroupedLinear(nn.Module):
    """``groups`` independent linear maps, one per variable: (..., groups, d_in) -> (..., groups, d_out).

    One einsum over grouped weights instead of a Python loop over ``groups`` modules.
    """

    def __init__(self, groups: int, d_in: int, d_out: int) -> None:
        super().__init__()
        bound = 1 / math.sqrt(d_in)
        self.weight = nn.Parameter(torch.empty(groups, d_in, d_out).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(groups, d_out).uniform_(-bound, bound))

    def forward(self, x: Tensor) -> Tensor:
        return torch.einsum("...gi,gio->...go", x, self.weight) + self.bias


class GatedResidualNetwork(nn.Module):
    """TFT's gated residual network: ``LayerNorm(skip(a) + GLU(W2 · dropout(ELU(W1 a))))``.

    TFT writes a linear map between the ELU and the GLU's own linear map; two linear maps in a row
    are one linear map, so that one is folded into ``W2`` (which outputs the GLU's value and gate).
    """

    def __init__(
        self, d_in: int, d_hidden: int, d_out: int, dropout: float = 0.0, skip: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.fc = nn.Linear(d_in, d_hidden)
        self.glu = nn.Linear(d_hidden, 2 * d_out)
        if skip is None:
            skip = nn.Linear(d_in, d_out) if d_in != d_out else nn.Identity()
        self.skip = skip
        self.drop = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(d_out)

    def forward(self, a: Tensor) -> Tensor:
        h = self.drop(F.elu(self.fc(a)))
        return self.norm(self.skip(a) + F.glu(self.glu(h), dim=-1))


class VariableGRN(nn.Module):
    """One gated residual network per variable, over that variable's (value, missing flag) pair:
    (..., F) values and flags -> (..., F, d) embeddings.

    Grouped weights: the first layer and the skip path are two broadcast multiply-adds (the input
    per variable is only two numbers), the GLU layer one :class:`GroupedLinear` einsum; the
    LayerNorm over ``d`` is shared by the variables. No dropout inside: on (B, L, F, d) tensors its
    masks cost a tenth of the model's time, for a hidden width of a few units.
    """

    def __init__(self, n_features: int, d: int) -> None:
        super().__init__()
        self.d = d
        bound = 1 / math.sqrt(2)
        # first layer (d) and skip path (d) side by side: weights for the value and for the flag
        self.value_weight = nn.Parameter(torch.empty(n_features, 2 * d).uniform_(-bound, bound))
        self.missing_weight = nn.Parameter(torch.empty(n_features, 2 * d).uniform_(-bound, bound))
        self.in_bias = nn.Parameter(torch.empty(n_features, 2 * d).uniform_(-bound, bound))
        self.glu = GroupedLinear(n_features, d, 2 * d)
        self.norm = nn.LayerNorm(d)

    def forward(self, x: Tensor, missing: Tensor) -> Tensor:
        z = torch.addcmul(self.in_bias, x.unsqueeze(-1), self.value_weight)
        z = torch.addcmul(z, missing.unsqueeze(-1), self.missing_weight)  # (..., F, 2d)
        pre, skip = z.split(self.d, dim=-1)
        return self.norm(skip + F.glu(self.glu(F.elu(pre)), dim=-1))


class VariableLinear(nn.Module):
    """One linear map per variable from its (value, missing flag) pair to ``d`` (TFT's own input
    transformation of a continuous variable): the cheap alternative to :class:`VariableGRN`.

    Being linear, it never materialises the (..., F, d) embeddings: :meth:`weighted_sum` computes
    ``sum_f w_f (x_f a_f + m_f b_f + c_f)`` as three (..., F) x (F, d) matrix products.
    """

    def __init__(self, n_features: int, d: int) -> None:
        super().__init__()
        bound = 1 / math.sqrt(2)
        self.value_weight = nn.Parameter(torch.empty(n_features, d).uniform_(-bound, bound))
        self.missing_weight = nn.Parameter(torch.empty(n_features, d).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(n_features, d).uniform_(-bound, bound))

    def weighted_sum(self, weights: Tensor, x: Tensor, missing: Tensor) -> Tensor:
        """(..., F) selection weights, values and flags -> (..., d)."""
        return (
            (weights * x) @ self.value_weight
            + (weights * missing) @ self.missing_weight
            + weights @ self.bias
        )


class PairedSkip(nn.Module):
    """The selector GRN's skip path: (..., 2F) = [values, flags] -> (..., F), each variable's logit
    from its own value and flag, ``a_f x_f + c_f m_f + b_f``.

    TFT's skip is a dense linear map when the widths differ; here that would be 2F x F weights (40k
    of the ``tiny`` network's 60k at 140 features, and ~40% of its CPU step) to say what the GRN's
    hidden layer already mixes across variables. The direct path keeps what a skip is for.
    """

    def __init__(self, n_features: int) -> None:
        super().__init__()
        self.value_weight = nn.Parameter(torch.ones(n_features))
        self.missing_weight = nn.Parameter(torch.zeros(n_features))
        self.bias = nn.Parameter(torch.zeros(n_features))

    def forward(self, a: Tensor) -> Tensor:
        x, missing = a.chunk(2, dim=-1)
        return torch.addcmul(torch.addcmul(self.bias, x, self.value_weight), missing, self.missing_weight)


class VariableSelectionNetwork(nn.Module):
    """TFT's variable selection, applied at every time step: each variable's (value, missing flag)
    is embedded on its own; selection weights are a softmax over the variables from a GRN over all
    the values and flags together (its skip path per variable, :class:`PairedSkip`); the embeddings are summed with those weights and projected to
    ``hidden``. (..., F) -> (..., hidden), and the weights (..., F) for inspection (which features
    the model leans on, per code and step).

    ``embedding="grn"`` passes each variable through its own GRN (:class:`VariableGRN`), as TFT's
    variable selection does; ``"linear"`` stops at each variable's own linear map
    (:class:`VariableLinear`, TFT's input embedding), which costs (..., F) tensors instead of
    (..., F, var_hidden) ones: about four times faster on a CPU, for the ``tiny`` size trained in CI.
    """

    def __init__(
        self, n_features: int, var_hidden: int, hidden: int, dropout: float = 0.0, embedding: str = "grn"
    ) -> None:
        super().__init__()
        if embedding not in VAR_EMBEDDINGS:
            raise ValueError(f"unknown variable embedding {embedding!r}: choose one of {VAR_EMBEDDINGS}")
        self.selector = GatedResidualNetwork(
            2 * n_features, hidden, n_features, dropout, skip=PairedSkip(n_features)
        )
        self.embed = VariableGRN(n_features, var_hidden) if embedding == "grn" else None
        self.linear = VariableLinear(n_features, var_hidden) if embedding == "linear" else None
        self.out = nn.Linear(var_hidden, hidden)

    def forward(self, x: Tensor, missing: Tensor) -> tuple[Tensor, Tensor]:
        weights = torch.softmax(self.selector(torch.cat([x, missing], dim=-1)), dim=-1)  # (..., F)
        if self.embed is not None:
            combined = torch.einsum("...f,...fd->...d", weights, self.embed(x, missing))
        else:
            combined = self.linear.weighted_sum(weights, x, missing)
        return self.out(combined), weights


def trailing_average_matrix(length: int, window: int, device: torch.device | None = None) -> Tensor:
    """(L, L) causal moving-average weights: row t averages steps max(0, t - window + 1) .. t (fewer
    at the start, never a later step)."""
    t = torch.arange(length, device=device)
    inside = (t[None, :] <= t[:, None]) & (t[None, :] > t[:, None] - window)
    return inside / inside.sum(1, keepdim=True)


def slice_ids(length: int, slices: int, device: torch.device | None = None) -> Tensor:
    """(L,) index of each step's slice: ``slices`` contiguous slices, as equal as possible (the
    first ``length % slices`` one step longer, like :func:`torch.tensor_split`)."""
    sizes = [length // slices + (k < length % slices) for k in range(slices)]
    return torch.repeat_interleave(torch.arange(slices, device=device), torch.tensor(sizes, device=device))


def slice_average_matrix(length: int, slices: int, device: torch.device | None = None) -> Tensor:
    """(L, L) weights: row t averages the steps of t's slice."""
    ids = slice_ids(length, slices, device)
    same = ids[None, :] == ids[:, None]
    return same / same.sum(1, keepdim=True)


def windowed_moments(x: Tensor, average: Tensor) -> tuple[Tensor, Tensor]:
    """Mean and 1 / std over time of (B, L, F) under (K, L) averaging weights -> two (B, K, F): one
    matrix product each for the first and second moment (population std, :data:`EPS` floor)."""
    mean = torch.matmul(average, x)
    var = (torch.matmul(average, x * x) - mean * mean).clamp(min=0)
    return mean, torch.rsqrt(var + EPS)


def trailing_moments(x: Tensor, window: int) -> tuple[Tensor, Tensor]:
    """Causal moving mean and std over time (dim 1) of (B, L, F), each (B, L, F): at step t, of
    steps max(0, t - window + 1) .. t."""
    mean, inv_std = windowed_moments(x, trailing_average_matrix(x.shape[1], window, x.device).to(x.dtype))
    return mean, 1 / inv_std


def normalised_views(x: Tensor, average: Tensor) -> Tensor:
    """(B, K, L, F): ``(x - m_k) / s_k`` for each of the K (L, L) averaging matrices stacked in
    ``average`` (K * L, L), every view from one pair of matrix products.

    The views hold no parameter: unless ``x`` itself needs a gradient they are computed outside
    autograd and in place, so the model's widest tensors are neither recorded nor copied.
    """
    B, L, F_ = x.shape
    K = average.shape[0] // L
    if torch.is_grad_enabled() and x.requires_grad:
        mean, inv_std = windowed_moments(x, average)
        return (x.unsqueeze(1) - mean.view(B, K, L, F_)) * inv_std.view(B, K, L, F_)
    with torch.no_grad():
        mean = torch.matmul(average, x)
        inv_std = torch.matmul(average, x * x).sub_(mean * mean).clamp_(min=0).add_(EPS).rsqrt_()
        views = x.unsqueeze(1) - mean.view(B, K, L, F_)
        return views.mul_(inv_std.view(B, K, L, F_))


def _full_precision(x: Tensor):
    """Normalisations are computed in float32 even under autocast: E[x^2] - E[x]^2 in bfloat16
    would be mostly rounding error."""
    return torch.autocast(device_type=x.device.type, enabled=False)


class FrequencyAdaptiveNorm(nn.Module):
    """FAN on the input sequence (B, L, F): for each window ``w``, every feature's value relative to
    its own trailing w-step mean, over its trailing w-step std; the versions (short windows: fast
    movements, long: slow) blended with learned softmax weights per feature.

    It acts on each code's time profile, which is where it means something: on a vector copied
    across time (as in the origin) every window's mean is the value itself and FAN reduces to a bias.
    """

    def __init__(self, n_features: int, windows: tuple[int, ...]) -> None:
        super().__init__()
        self.windows = tuple(windows)
        self.blend = nn.Parameter(torch.zeros(n_features, len(self.windows)))

    def averages(self, length: int, device: torch.device | None = None) -> Tensor:
        """(W * L, L): the trailing averaging matrices of the windows, stacked."""
        return torch.cat([trailing_average_matrix(length, w, device) for w in self.windows])

    def coefficients(self) -> Tensor:
        """(W, F): the softmax blend of the windows, per feature."""
        return torch.softmax(self.blend.float(), dim=-1).T

    def forward(self, x: Tensor) -> Tensor:
        with _full_precision(x):
            x = x.float()
            views = normalised_views(x, self.averages(x.shape[1], x.device))
            return (views * self.coefficients()[None, :, None, :]).sum(1)


class SliceAdaptiveNorm(nn.Module):
    """SAN on the input sequence (B, L, F): the L steps cut into ``slices`` contiguous slices (as
    equal as possible), each normalised by its own per-feature mean and std over its steps, then a
    learned affine per slice and feature (LayerNorm-like, with the :data:`EPS` variance floor).

    Not causal within a slice (later steps of a slice shape the normalisation of earlier ones); the
    model's output still depends only on the window it is given.
    """

    def __init__(self, n_features: int, slices: int) -> None:
        super().__init__()
        self.slices = slices
        self.weight = nn.Parameter(torch.ones(slices, n_features))
        self.bias = nn.Parameter(torch.zeros(slices, n_features))

    def affine(self, length: int, device: torch.device | None = None) -> tuple[Tensor, Tensor]:
        """(L, F) weight and bias of each step, from its slice's."""
        ids = slice_ids(length, self.slices, device)
        return self.weight.float()[ids], self.bias.float()[ids]

    def forward(self, x: Tensor) -> Tensor:
        L = x.shape[1]
        with _full_precision(x):
            x = x.float()
            views = normalised_views(x, slice_average_matrix(L, self.slices, x.device))
            weight, bias = self.affine(L, x.device)
            return views[:, 0] * weight + bias


class AdaptiveInputNorm(nn.Module):
    """FAN and SAN on the input sequence, with the raw input kept: per feature, a learned softmax
    mix ``m_raw * x + m_fan * FAN(x) + m_san * SAN(x)`` (all three start at 1/3).

    Why keep the raw path: the inputs are already normalised across the cross-section, and a code's
    raw level (say, its momentum rank today) is itself informative; FAN and SAN alone would remove
    it (a flat profile maps to 0). A mix rather than a concatenation keeps the variable selection at
    F variables. Missing values enter as the 0 they were filled with; the variable selection still
    sees their flags.

    Computed as one weighted sum: FAN's W windows and SAN's slices are W + 1 normalised views of
    ``x`` from one stacked averaging matrix (:func:`normalised_views`, outside autograd), and every
    parameter (mix, FAN's blend, SAN's affine) folds into a (W + 1, L, F) coefficient tensor and an
    (L, F) bias. Exactly the formula above, at about a third of the cost of running FAN, SAN and the
    mix one after the other on the model's widest tensors.
    """

    def __init__(self, n_features: int, windows: tuple[int, ...], slices: int) -> None:
        super().__init__()
        self.fan = FrequencyAdaptiveNorm(n_features, windows)
        self.san = SliceAdaptiveNorm(n_features, slices)
        self.mix = nn.Parameter(torch.zeros(n_features, 3))

    def forward(self, x: Tensor) -> Tensor:
        L = x.shape[1]
        with _full_precision(x):
            x = x.float()
            average = torch.cat(
                [self.fan.averages(L, x.device), slice_average_matrix(L, self.san.slices, x.device)]
            )
            views = normalised_views(x, average)  # (B, W + 1, L, F): FAN's windows, then SAN's
            mix = torch.softmax(self.mix.float(), dim=-1)  # (F, 3)
            san_weight, san_bias = self.san.affine(L, x.device)
            fan_coef = (self.fan.coefficients() * mix[:, 1])[:, None, :].expand(-1, L, -1)
            coef = torch.cat([fan_coef, (san_weight * mix[:, 2])[None]])  # (W + 1, L, F)
            return x * mix[:, 0] + (views * coef).sum(1) + san_bias * mix[:, 2]


class TemporalBlock(nn.Module):
    """The TFT temporal core over (B, L, hidden): an LSTM, then causal multi-head self-attention
    (each step attends to itself and earlier steps only), each with a gated residual and LayerNorm,
    then a position-wise GRN. :meth:`forward` returns every step, (B, L, hidden); the model reads the
    last through :meth:`last_step`."""

    def __init__(self, hidden: int, layers: int, heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.lstm = nn.LSTM(hidden, hidden, num_layers=layers, batch_first=True)
        self.lstm_gate = nn.Linear(hidden, 2 * hidden)
        self.lstm_norm = nn.LayerNorm(hidden)
        self.attn = nn.MultiheadAttention(hidden, heads, dropout=dropout, batch_first=True)
        self.attn_gate = nn.Linear(hidden, 2 * hidden)
        self.attn_norm = nn.LayerNorm(hidden)
        self.ff = GatedResidualNetwork(hidden, hidden, hidden, dropout)

    def _recurrent(self, h: Tensor) -> Tensor:
        out, _ = self.lstm(h)
        return self.lstm_norm(h + F.glu(self.lstm_gate(out), dim=-1))

    def _attend(self, query: Tensor, h: Tensor, mask: Tensor | None) -> Tensor:
        att, _ = self.attn(query, h, h, attn_mask=mask, need_weights=False)
        return self.ff(self.attn_norm(query + F.glu(self.attn_gate(att), dim=-1)))

    def forward(self, h: Tensor) -> Tensor:
        h = self._recurrent(h)
        L = h.shape[1]
        future = torch.ones(L, L, dtype=torch.bool, device=h.device).triu(diagonal=1)  # True = masked
        return self._attend(h, h, future)

    def last_step(self, h: Tensor) -> Tensor:
        """``forward(h)[:, -1]``, (B, hidden), computing attention and the GRN for the last step only
        (the one the model reads); it attends to every step, so it needs no mask."""
        h = self._recurrent(h)
        return self._attend(h[:, -1:], h, None)[:, 0]


class GraphFusion(nn.Module):
    """GATv2 layers (torch_geometric, with edge attributes) over the day's graph, ELU after each,
    then a gated residual fusion of each code's temporal vector ``h`` with its graph vector ``g``:
    ``LayerNorm(h + GLU(W [h; g]))``. Self loops are added, so a code without edges still has a
    graph vector (of itself) and the block works with no edges at all."""

    def __init__(self, hidden: int, layers: int, heads: int, edge_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.convs = nn.ModuleList(
            GATv2Conv(
                hidden, hidden // heads, heads=heads, edge_dim=edge_dim, add_self_loops=True, dropout=dropout
            )
            for _ in range(layers)
        )
        self.fuse = nn.Linear(2 * hidden, 2 * hidden)
        self.norm = nn.LayerNorm(hidden)

    def forward(self, h: Tensor, edge_index: Tensor, edge_attr: Tensor) -> Tensor:
        g = h
        for conv in self.convs:
            g = F.elu(conv(g, edge_index, edge_attr))
        return self.norm(h + F.glu(self.fuse(torch.cat([h, g], dim=-1)), dim=-1))


class QuantileHeads(nn.Module):
    """One small MLP per horizon, hidden -> quantiles: (B, hidden) -> (B, horizons, quantiles)."""

    def __init__(self, hidden: int, n_horizons: int, n_quantiles: int) -> None:
        super().__init__()
        self.heads = nn.ModuleList(
            nn.Sequential(nn.Linear(hidden, hidden), nn.ELU(), nn.Linear(hidden, n_quantiles))
            for _ in range(n_horizons)
        )

    def forward(self, h: Tensor) -> Tensor:
        return torch.stack([head(h) for head in self.heads], dim=1)


class WidePath(nn.Module):
    """The wide half of wide & deep: one linear map from a code's last-day inputs (normalised values
    and missing flags) to one offset per horizon, (B, F), (B, F) -> (B, horizons), added to every
    quantile of that horizon. Zero-initialised, so the network starts as its deep path alone."""

    def __init__(self, n_features: int, n_horizons: int) -> None:
        super().__init__()
        self.linear = nn.Linear(2 * n_features, n_horizons)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, x: Tensor, missing: Tensor) -> Tensor:
        return self.linear(torch.cat([x, missing], dim=-1))
