"""ATFT-GAT-FAN (gogooku3.model): shapes, what may and may not mix (codes, time steps), FAN acting
on time profiles, the losses' values, determinism, a small overfitting check, and the config."""

from __future__ import annotations

import json
import time

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torch_geometric")

from torch import nn  # noqa: E402

from gogooku3.model import (  # noqa: E402
    ATFTGATFAN,
    SIZES,
    ModelConfig,
    horizon_weights,
    parameter_count,
    pinball_loss,
    soft_rank,
    soft_rank_correlation,
    training_loss,
)
from gogooku3.model.layers import (  # noqa: E402
    AdaptiveInputNorm,
    FrequencyAdaptiveNorm,
    SliceAdaptiveNorm,
    TemporalBlock,
    trailing_moments,
)
from gogooku3.model.losses import hard_rank  # noqa: E402

B, L, F = 7, 20, 13
NO_EDGES = (torch.zeros(2, 0, dtype=torch.long), torch.zeros(0, 2))


def _inputs(seed: int = 0, b: int = B, f: int = F) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, L, f, generator=g)
    missing = torch.rand(b, L, f, generator=g) < 0.1
    return x.masked_fill(missing, 0.0), missing.float()


def _random_edges(seed: int = 0, n_edges: int = 20) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(0, B, (n_edges,), generator=g)
    dst = (src + torch.randint(1, B, (n_edges,), generator=g)) % B  # no self loops
    return torch.stack([src, dst]), torch.rand(n_edges, 2, generator=g)


def _model(size: str, seed: int = 0, **overrides) -> ATFTGATFAN:
    torch.manual_seed(seed)
    return ATFTGATFAN(ModelConfig.for_size(size, F, **overrides)).eval()


# --- shapes and structure ---------------------------------------------------------------------------


@pytest.mark.parametrize("size", SIZES)
def test_forward_shapes_with_and_without_edges(size):
    model = _model(size)
    x, missing = _inputs()
    for edges in (_random_edges(), NO_EDGES):
        out = model(x, missing, *edges)
        assert out.shape == (B, 4, 3)
        assert torch.isfinite(out).all()
    assert model.point_forecast(out).shape == (B, 4)


@pytest.mark.parametrize("size", SIZES)
def test_no_batch_or_instance_norm_only_layer_norm(size):
    modules = list(_model(size).modules())
    banned = (nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm)
    assert not [m for m in modules if isinstance(m, banned)]
    assert any(isinstance(m, nn.LayerNorm) for m in modules)


def test_parameter_counts_increase_with_size():
    counts = {size: parameter_count(ATFTGATFAN(ModelConfig.for_size(size, 140))) for size in SIZES}
    print("parameters (n_features=140):", counts)
    values = [counts[size] for size in SIZES]
    assert values == sorted(values) and len(set(values)) == len(values)


def test_point_forecast_is_median_or_mean_of_quantiles():
    out = torch.arange(24.0).view(2, 4, 3)
    assert torch.equal(_model("tiny").point_forecast(out), out[..., 1])
    no_median = _model("tiny", quantiles=(0.1, 0.9))
    assert torch.equal(no_median.point_forecast(out[..., :2]), out[..., :2].mean(-1))


# --- what mixes: codes only through the graph, time only causally -----------------------------------


@pytest.mark.parametrize("size", SIZES)
def test_codes_are_independent_without_edges(size):
    """No BatchNorm, nothing else mixing the cross-section: with no edges, code i's output is
    bitwise unchanged when code j's inputs change (j's own output does change)."""
    model = _model(size)
    x, missing = _inputs()
    j = 3
    x2, missing2 = x.clone(), missing.clone()
    x2[j] = torch.randn(L, F) * 3
    missing2[j] = 1 - missing2[j]
    with torch.no_grad():
        out, out2 = model(x, missing, *NO_EDGES), model(x2, missing2, *NO_EDGES)
    others = [i for i in range(B) if i != j]
    assert torch.equal(out[others], out2[others])
    assert not torch.allclose(out[j], out2[j])


@pytest.mark.parametrize("size", ["tiny", "base"])
def test_an_edge_carries_information(size):
    """With the one edge j -> i, perturbing j changes i's output, and no one else's."""
    model = _model(size)
    x, missing = _inputs()
    j, i = 2, 5
    edges = (torch.tensor([[j], [i]]), torch.tensor([[0.8, 1.0]]))
    x2 = x.clone()
    x2[j] = torch.randn(L, F) * 3
    with torch.no_grad():
        out, out2 = model(x, missing, *edges), model(x2, missing, *edges)
    assert not torch.allclose(out[i], out2[i])
    untouched = [k for k in range(B) if k not in (i, j)]
    assert torch.equal(out[untouched], out2[untouched])


def test_temporal_attention_is_causal():
    """The temporal block (LSTM + masked attention): perturbing step t + 1 leaves every output at
    steps <= t unchanged, and changes step t + 1."""
    torch.manual_seed(0)
    block = TemporalBlock(hidden=16, layers=1, heads=2, dropout=0.1).eval()
    h = torch.randn(3, L, 16)
    with torch.no_grad():
        base = block(h)
        for t in (0, 7, L - 2):
            h2 = h.clone()
            h2[:, t + 1] += torch.randn(3, 16)
            out = block(h2)
            torch.testing.assert_close(out[:, : t + 1], base[:, : t + 1], rtol=0, atol=1e-6)
            assert (out[:, t + 1] - base[:, t + 1]).abs().max() > 1e-3


def test_last_step_is_the_last_of_every_step():
    """The model reads only the last step, computed alone (attention for one query): it must be
    exactly what the every-step pass gives there, in training mode's shapes and in eval."""
    torch.manual_seed(0)
    block = TemporalBlock(hidden=16, layers=1, heads=2, dropout=0.0).eval()
    h = torch.randn(5, L, 16)
    with torch.no_grad():
        torch.testing.assert_close(block.last_step(h), block(h)[:, -1], rtol=1e-5, atol=1e-6)
        h2 = h.clone()
        h2[:, 3] += 3 * torch.randn(5, 16)  # an early step still reaches the last one
        assert (block.last_step(h2) - block.last_step(h)).abs().max() > 1e-3


def test_fan_is_causal_and_its_moments_are_trailing():
    x = torch.randn(2, L, 3)
    mean, std = trailing_moments(x, 5)
    for t in (0, 3, 4, 12, L - 1):
        window = x[:, max(0, t - 4) : t + 1]
        torch.testing.assert_close(mean[:, t], window.mean(1))
        torch.testing.assert_close(std[:, t], (window.var(1, unbiased=False) + 1e-2).sqrt())
    fan = FrequencyAdaptiveNorm(3, (5, 10, 20))
    x2 = x.clone()
    x2[:, 10:] += 5.0
    with torch.no_grad():
        torch.testing.assert_close(fan(x2)[:, :10], fan(x)[:, :10], rtol=0, atol=1e-6)


# --- FAN acts on time profiles, and the raw level survives ------------------------------------------


def test_fan_depends_on_the_time_profile_not_just_the_level():
    """The origin applied FAN to a vector copied across time, where it is a bias. Here it sees the
    profile: sequences ending at the same value but shaped differently get different outputs, and
    a flat sequence normalises to ~0 whatever its level."""
    fan = FrequencyAdaptiveNorm(1, (5, 10, 20))
    rising = torch.linspace(-1, 1, L)
    wiggly = rising + 0.5 * torch.sin(torch.arange(L) * 2.0)
    wiggly = wiggly - wiggly[-1] + 1.0
    flat = torch.ones(L)
    with torch.no_grad():
        ends = fan(torch.stack([rising, wiggly, flat]).unsqueeze(-1))[:, -1, 0]
        assert (ends[0] - ends[1]).abs() > 0.05 and ends[0] > 0.5
        assert ends[2].abs() < 1e-4
        levels = torch.tensor([-2.0, 0.0, 3.0]).view(3, 1, 1)
        assert fan(levels.expand(3, L, 1)).abs().max() < 1e-4


def test_san_normalises_each_slice_with_its_own_affine():
    x = torch.randn(2, L, 3) * 4 + 7
    san = SliceAdaptiveNorm(3, 3)
    with torch.no_grad():
        out = san(x)
        for part in torch.tensor_split(out, 3, dim=1):  # steps 0-6, 7-13, 14-19
            torch.testing.assert_close(part.mean(1), torch.zeros(2, 3), atol=1e-5, rtol=0)
            torch.testing.assert_close(part.std(1, unbiased=False), torch.ones(2, 3), atol=2e-3, rtol=0)
        san.weight[2] = 2.0
        san.bias[2] = -1.0
        last = san(x)[:, 14:]
    torch.testing.assert_close(last, out[:, 14:] * 2 - 1)


def test_input_norm_is_the_mix_of_raw_fan_and_san():
    """The fused input normalisation computes exactly m_raw * x + m_fan * FAN(x) + m_san * SAN(x),
    for trained-looking (non-default) parameters, with and without a gradient to the input."""
    torch.manual_seed(4)
    norm = AdaptiveInputNorm(F, (5, 10, 20), 3)
    with torch.no_grad():
        for p in norm.parameters():
            p.copy_(torch.randn_like(p))
    x = torch.randn(B, L, F) * 2 + 1
    mix = torch.softmax(norm.mix, dim=-1)
    expected = x * mix[:, 0] + norm.fan(x) * mix[:, 1] + norm.san(x) * mix[:, 2]
    torch.testing.assert_close(norm(x), expected, rtol=1e-5, atol=1e-5)
    xg = x.clone().requires_grad_()
    torch.testing.assert_close(norm(xg), expected, rtol=1e-5, atol=1e-5)
    norm(x).sum().backward()  # every parameter gets a gradient
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in norm.parameters())


@pytest.mark.parametrize("size", ["tiny", "base"])
def test_flat_inputs_keep_their_level(size):
    """Codes whose features are constant in time but differ in level must not all get the same
    forecast (they would if only FAN/SAN outputs reached the network)."""
    model = _model(size)
    levels = torch.randn(B, 1, F)
    x = levels.expand(B, L, F).contiguous()
    with torch.no_grad():
        out = model(x, torch.zeros_like(x), *NO_EDGES)
    assert out.std(0).max() > 1e-3


# --- losses ----------------------------------------------------------------------------------------


def test_horizon_weights():
    assert horizon_weights((1, 5, 10, 20)).tolist() == pytest.approx([1.0, 0.8, 0.6, 0.4])
    assert horizon_weights((2, 3, 15, 40)).tolist() == pytest.approx([0.95, 0.9, 0.5, 0.4])


def test_pinball_loss_by_hand():
    quantiles = (0.1, 0.5, 0.9)
    pred = torch.tensor([[[0.0, 1.0, 2.0], [1.0, 1.0, 1.0]]])  # (B=1, H=2, Q=3)
    target = torch.tensor([[1.5, 0.0]])
    weights = torch.tensor([1.0, 0.5])
    # horizon 0, errors y - pred = 1.5, 0.5, -0.5: 0.1 * 1.5, 0.5 * 0.5, (0.9 - 1) * -0.5
    h0 = (0.15 + 0.25 + 0.05) / 3
    # horizon 1, errors -1 each: (q - 1) * -1 = 0.9, 0.5, 0.1
    h1 = (0.9 + 0.5 + 0.1) / 3
    expected = (1.0 * h0 + 0.5 * h1) / 1.5
    assert float(pinball_loss(pred, target, quantiles, weights)) == pytest.approx(expected)


def test_pinball_loss_ignores_nan_targets():
    quantiles = (0.1, 0.5, 0.9)
    g = torch.Generator().manual_seed(1)
    pred = torch.randn(5, 2, 3, generator=g, requires_grad=True)
    target = torch.randn(5, 2, generator=g)
    weights = torch.tensor([1.0, 0.8])
    holed = target.clone()
    holed[1, 0] = holed[3, 1] = float("nan")
    keep0, keep1 = [0, 2, 3, 4], [0, 1, 2, 4]
    per0 = pinball_loss(pred[keep0, :1], target[keep0, :1], quantiles, weights[:1])
    per1 = pinball_loss(pred[keep1, 1:], target[keep1, 1:], quantiles, weights[1:])
    expected = (4 * 1.0 * per0 + 4 * 0.8 * per1) / (4 * 1.0 + 4 * 0.8)
    loss = pinball_loss(pred, holed, quantiles, weights)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    loss.backward()
    assert torch.isfinite(pred.grad).all() and (pred.grad[1, 0] == 0).all()

    nothing = pinball_loss(pred, torch.full_like(target, float("nan")), quantiles, weights)
    assert nothing.item() == 0.0 and nothing.requires_grad


def test_soft_rank_matches_hard_rank_when_separated_and_has_gradient():
    x = torch.tensor([3.0, -1.0, 0.5, 10.0, 2.0])
    torch.testing.assert_close(
        soft_rank(x, tau=0.01), torch.tensor([4.0, 1.0, 2.0, 5.0, 3.0]), atol=1e-3, rtol=0
    )
    assert hard_rank(torch.tensor([2.0, 1.0, 2.0])).tolist() == [2.5, 1.0, 2.5]
    close = torch.tensor([0.0, 0.05, 0.1, 0.3], requires_grad=True)
    (soft_rank(close, tau=0.1) * torch.arange(4.0)).sum().backward()
    assert close.grad.abs().sum() > 0.1


def test_soft_rank_correlation_is_rank_based():
    g = torch.Generator().manual_seed(0)
    target = torch.randn(200, generator=g)
    assert float(soft_rank_correlation(2 * target + 1, target)) > 0.99
    assert float(soft_rank_correlation(-target, target)) < -0.99
    cubed = target**3
    centred = cubed - cubed.mean(), target - target.mean()
    pearson = float((centred[0] * centred[1]).sum() / (centred[0].norm() * centred[1].norm()))
    assert pearson < 0.85
    assert float(soft_rank_correlation(cubed, target, tau=0.01)) > 0.99
    assert float(soft_rank_correlation(cubed, target)) > pearson + 0.1  # at the default tau too
    assert float(soft_rank_correlation(1e-4 * cubed, target)) == pytest.approx(
        float(soft_rank_correlation(cubed, target)), abs=1e-5
    )  # scale-free


def test_soft_rank_correlation_drops_nan_and_needs_three():
    target = torch.tensor([1.0, float("nan"), 3.0, 2.0, float("nan")])
    pred = torch.tensor([0.1, 99.0, 0.3, 0.2, -99.0], requires_grad=True)
    corr = soft_rank_correlation(pred, target, tau=0.01)
    assert corr.item() > 0.99
    corr.backward()
    assert torch.isfinite(pred.grad).all()
    few = soft_rank_correlation(pred, torch.tensor([1.0, 2.0] + [float("nan")] * 3))
    assert few.item() == 0.0


def test_training_loss_combines_pinball_and_soft_rank_correlation():
    g = torch.Generator().manual_seed(2)
    pred = torch.randn(30, 2, 3, generator=g, requires_grad=True)
    target = torch.randn(30, 2, generator=g)
    target[:28, 1] = float("nan")  # horizon 1 has 2 known targets: left out of the correlation mean
    quantiles, weights = (0.1, 0.5, 0.9), torch.tensor([1.0, 0.8])
    pinball = pinball_loss(pred, target, quantiles, weights).item()
    plain = training_loss(pred, target, quantiles, weights, median_index=1)
    assert plain.item() == pinball
    corr = soft_rank_correlation(pred[:, 0, 1], target[:, 0]).item()
    mixed = training_loss(pred, target, quantiles, weights, rank_weight=0.5, median_index=1)
    assert mixed.item() == pytest.approx(pinball + 0.5 * (1 - corr), abs=1e-6)
    mixed.backward()
    assert pred.grad[:, 0, 1].abs().sum() > 0


# --- determinism, learning -------------------------------------------------------------------------


def test_same_seed_same_parameters_and_outputs():
    a, b, c = _model("small", seed=7), _model("small", seed=7), _model("small", seed=8)
    for (name, pa), (_, pb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(pa, pb), name
    assert any(not torch.equal(pa, pc) for pa, pc in zip(a.parameters(), c.parameters(), strict=True))
    x, missing = _inputs()
    edges = _random_edges()
    with torch.no_grad():
        assert torch.equal(a(x, missing, *edges), b(x, missing, *edges))


def test_tiny_model_fits_a_linear_signal():
    """200 AdamW steps on one fixed batch whose targets are linear in the last step's first feature:
    the pinball loss falls by more than half."""
    torch.manual_seed(0)
    n, f = 64, 8
    cfg = ModelConfig.for_size("tiny", f)
    model = ATFTGATFAN(cfg).train()
    x, missing = _inputs(seed=3, b=n, f=f)
    target = torch.stack([0.5 * k * x[:, -1, 0] for k in (1.0, 0.8, 0.6, 0.4)], dim=1)
    weights = horizon_weights(cfg.horizons)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    edges = (torch.zeros(2, 0, dtype=torch.long), torch.zeros(0, 2))
    start, losses = time.perf_counter(), []
    for _ in range(200):
        loss = training_loss(model(x, missing, *edges), target, cfg.quantiles, weights, median_index=1)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    print(f"pinball {losses[0]:.4f} -> {losses[-1]:.4f} in {time.perf_counter() - start:.1f} s")
    assert losses[-1] < 0.5 * losses[0]


# --- config ----------------------------------------------------------------------------------------


def test_sizes():
    tiny = ModelConfig.for_size("tiny", 140)
    assert (tiny.hidden, tiny.var_hidden, tiny.attn_heads, tiny.gat_layers, tiny.gat_heads) == (
        16,
        4,
        2,
        1,
        1,
    )
    assert (ModelConfig.for_size("small", 140).hidden, ModelConfig.for_size("small", 140).var_hidden) == (
        32,
        8,
    )
    assert ModelConfig.for_size("base", 140) == ModelConfig(n_features=140)
    large = ModelConfig.for_size("large", 140, horizons=(1, 2, 3), dropout=0.2)
    assert (large.hidden, large.var_hidden, large.attn_heads, large.size) == (256, 32, 8, "large")
    assert (large.horizons, large.dropout) == ((1, 2, 3), 0.2)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"size": "huge"}, r"'huge'.*tiny, small, base, large"),
        ({"hidden": 30, "attn_heads": 4}, "attn_heads"),
        ({"hidden": 30, "attn_heads": 2, "gat_heads": 4}, "gat_heads"),
        ({"horizons": (1, 5, 5)}, "horizons"),
        ({"horizons": (0, 5)}, "horizons"),
        ({"horizons": ()}, "horizons"),
        ({"quantiles": (0.0, 0.5)}, "quantiles"),
        ({"quantiles": (0.5, 1.0)}, "quantiles"),
        ({"quantiles": (0.9, 0.5, 0.1)}, "quantiles"),
        ({"quantiles": (0.5, 0.5)}, "quantiles"),
        ({"var_embedding": "mlp"}, "var_embedding"),
        ({"san_slices": 21}, "san_slices"),
    ],
)
def test_config_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ModelConfig(n_features=10, **kwargs)


def test_for_size_rejects_unknown_size():
    with pytest.raises(ValueError, match=r"'xl'.*tiny, small, base, large"):
        ModelConfig.for_size("xl", 10)


def test_config_json_round_trip():
    cfg = ModelConfig.for_size("small", 62, horizons=(1, 2, 3, 5, 10, 20), quantiles=(0.25, 0.5, 0.75))
    back = ModelConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert back == cfg and isinstance(back.horizons, tuple) and isinstance(back.fan_windows, tuple)
    with pytest.raises(ValueError, match="colour"):
        ModelConfig.from_dict({**cfg.to_dict(), "colour": "red"})


# --- the wide path ----------------------------------------------------------------------------------


def test_wide_path_starts_at_zero_and_adds_a_linear_map_of_the_last_day():
    x, missing = _inputs()
    deep, wide = _model("tiny", wide=False), _model("tiny", wide=True)
    with torch.no_grad():
        assert torch.equal(deep(x, missing, *NO_EDGES), wide(x, missing, *NO_EDGES))  # zero at start
        g = torch.Generator().manual_seed(3)
        w = torch.randn(len(wide.cfg.horizons), 2 * F, generator=g)
        wide.wide.linear.weight.copy_(w)
        wide.wide.linear.bias.fill_(0.5)
        offset = torch.cat([x[:, -1], missing[:, -1]], dim=-1) @ w.T + 0.5  # (B, horizons)
        gap = wide(x, missing, *NO_EDGES) - deep(x, missing, *NO_EDGES)
    assert torch.allclose(gap, offset.unsqueeze(-1).expand_as(gap), atol=1e-5)  # every quantile


def test_the_wide_path_learns():
    model = _model("tiny", wide=True).train()
    x, missing = _inputs()
    model(x, missing, *NO_EDGES).sum().backward()
    assert model.wide.linear.weight.grad.abs().sum() > 0


def test_a_config_saved_before_the_wide_path_rebuilds_without_it():
    cfg = ModelConfig.for_size("tiny", F)
    assert cfg.wide  # new networks have it
    saved = {k: v for k, v in json.loads(json.dumps(cfg.to_dict())).items() if k != "wide"}
    old = ModelConfig.from_dict(saved)
    assert not old.wide
    torch.manual_seed(0)
    deep_weights = ATFTGATFAN(old).state_dict()
    assert not any(k.startswith("wide.") for k in deep_weights)
    ATFTGATFAN(ModelConfig.from_dict(saved)).load_state_dict(deep_weights)  # strict: the same modules


def test_a_network_started_from_a_linear_model_forecasts_exactly_that_model():
    x, missing = _inputs()
    model = _model("tiny", wide=True)
    H = len(model.cfg.horizons)
    g = torch.Generator().manual_seed(5)
    weights = torch.randn(F + 1, H, generator=g)  # coefficients on the last day's values, intercept last
    model.start_from_linear(weights)
    with torch.no_grad():
        out = model(x, missing, *_random_edges())
    linear = x[:, -1] @ weights[:F] + weights[F]  # (B, H): missing values are 0 in x
    assert torch.allclose(out, linear.unsqueeze(-1).expand_as(out), atol=1e-5)  # every quantile
    # ... and the deep path still learns from there: the zeroed head layers get gradients
    model.train()
    model(x, missing, *_random_edges()).square().sum().backward()
    assert model.heads.heads[0][-1].weight.grad.abs().sum() > 0


def test_a_linear_start_needs_the_wide_path_and_the_right_shape():
    with pytest.raises(ValueError, match="wide path"):
        _model("tiny", wide=False).start_from_linear(torch.zeros(F + 1, 4))
    with pytest.raises(ValueError, match=rf"expected \({F + 1}, 4\), got \({F}, 4\)"):
        _model("tiny", wide=True).start_from_linear(torch.zeros(F, 4))
