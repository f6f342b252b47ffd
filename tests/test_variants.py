"""Dropout variants: channel, alpha, Gaussian, DropConnect, drop-path, DropBlock, locked, shared.

Four kinds of test per variant (shared/STYLE.md): contract (shape, eval, repr, state_dict),
statistics (seeded, binomial bounds), parity (torch's own modules given the same mask, gradcheck)
and edges / errors.
"""

from __future__ import annotations

import math
import re

import pytest
import torch
import torch.nn.functional as TF

import droplab
from droplab import functional as F
from droplab.kernels.rng import derive_seed, dropout_mask

ALPHA_PRIME = -1.7580993408473766


def binomial_bound(p: float, n: int, k: float = 5.0) -> float:
    """``k`` standard deviations of a Bernoulli(p) frequency over ``n`` draws."""
    return k * math.sqrt(p * (1 - p) / n)


# ----------------------------------------------------------------------------------------------
# channel dropout (Dropout1d / 2d / 3d)
# ----------------------------------------------------------------------------------------------

CHANNEL = [
    # droplab function, torch function, droplab module, torch module, input shape, mask shape
    (F.dropout1d, TF.dropout1d, droplab.Dropout1d, torch.nn.Dropout1d, (4, 5, 6), (4, 5, 1)),
    (F.dropout1d, TF.dropout1d, droplab.Dropout1d, torch.nn.Dropout1d, (5, 6), (5, 1)),
    (F.dropout2d, TF.dropout2d, droplab.Dropout2d, torch.nn.Dropout2d, (4, 5, 3, 6), (4, 5, 1, 1)),
    (
        F.dropout3d,
        TF.dropout3d,
        droplab.Dropout3d,
        torch.nn.Dropout3d,
        (2, 5, 2, 3, 4),
        (2, 5, 1, 1, 1),
    ),
    (F.dropout3d, TF.dropout3d, droplab.Dropout3d, torch.nn.Dropout3d, (5, 2, 3, 4), (5, 1, 1, 1)),
]
CHANNEL_IDS = ["1d", "1d-unbatched", "2d", "3d", "3d-unbatched"]


@pytest.mark.parametrize("fn, tfn, mod, tmod, shape, mshape", CHANNEL, ids=CHANNEL_IDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_channel_parity_with_torch_given_the_same_rng(fn, tfn, mod, tmod, shape, mshape, dtype):
    # droplab draws its unseeded mask with the very call torch makes, so the same global seed
    # gives the same mask: the outputs must agree bit for bit
    x = torch.randn(shape, dtype=dtype)
    torch.manual_seed(7)
    ours = fn(x, 0.3)
    torch.manual_seed(7)
    theirs = tfn(x, 0.3, training=True)
    assert torch.equal(ours, theirs)
    torch.manual_seed(8)
    ours = mod(0.4)(x)
    torch.manual_seed(8)
    theirs = tmod(0.4)(x)
    assert torch.equal(ours, theirs)


@pytest.mark.parametrize("fn, tfn, mod, tmod, shape, mshape", CHANNEL, ids=CHANNEL_IDS)
def test_channel_seeded_mask_is_the_documented_one(fn, tfn, mod, tmod, shape, mshape):
    x = torch.rand(shape, dtype=torch.float64) + 0.5
    m = dropout_mask(mshape, 0.4, seed=11)
    assert torch.equal(fn(x, 0.4, seed=11), x * m / 0.6)
    assert torch.equal(fn(x, 0.4, mode="classic", seed=11), x * m)
    assert torch.equal(fn(x, 0.4, training=False, mode="classic"), x * 0.6)
    assert fn(x, 0.4, training=False) is x
    # the module: step k uses derive_seed(seed, k); eval leaves the counter alone
    layer = mod(0.4, seed=3)
    for k in range(2):
        expected = x * dropout_mask(mshape, 0.4, seed=derive_seed(3, k)) / 0.6
        assert torch.equal(layer(x), expected)
    layer.eval()
    assert torch.equal(layer(x), x) and layer.step == 2


def test_channel_drops_whole_channels_at_rate_p():
    p, n, c = 0.3, 200, 50
    y = F.dropout2d(torch.ones(n, c, 3, 4), p, seed=5)
    per_channel = y.flatten(2)
    # every channel is all zeros or all 1 / (1 - p): kept values exact
    assert torch.all((per_channel == 0).all(-1) | (per_channel == 1 / (1 - p)).all(-1))
    dropped = (per_channel[..., 0] == 0).double().mean().item()
    assert abs(dropped - p) < binomial_bound(p, n * c)


@pytest.mark.parametrize("fn, tfn, mod, tmod, shape, mshape", CHANNEL, ids=CHANNEL_IDS)
def test_channel_gradcheck(fn, tfn, mod, tmod, shape, mshape):
    small = tuple(min(s, 3) for s in shape)  # gradcheck's cost grows with numel squared
    x = torch.randn(small, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: fn(t, 0.5, seed=1), (x,))
    assert torch.autograd.gradcheck(lambda t: fn(t, 0.5, mode="classic", seed=1), (x,))


def test_channel_edges_and_inplace():
    x = torch.randn(3, 4, 5, 5)
    assert F.dropout2d(x, 0.0) is x
    assert torch.equal(F.dropout2d(x, 1.0), torch.zeros_like(x))
    assert torch.equal(F.dropout2d(x, 1.0, mode="classic", training=False), torch.zeros_like(x))
    y = x.clone()
    out = F.dropout2d(y, 0.5, inplace=True, seed=2)
    assert out is y and torch.equal(y, F.dropout2d(x, 0.5, seed=2))
    layer = droplab.Dropout2d(0.5, inplace=True, seed=4)
    z = x.clone()
    assert layer(z) is z
    assert F.dropout2d(torch.empty(0, 3, 2, 2), 0.5).shape == (0, 3, 2, 2)


def test_dropout2d_refuses_3d_input_that_torch_reinterprets():
    # pytorch issue 69801: torch reads (C, H, W) as (N, C, L); droplab raises and says what to use
    with pytest.raises(ValueError, match=r"use dropout1d / Dropout1d.*x\.unsqueeze\(0\)"):
        F.dropout2d(torch.ones(3, 4, 5), 0.5)
    with pytest.raises(ValueError, match="69801"):
        droplab.Dropout2d(0.5)(torch.ones(3, 4, 5))
    # in eval torch returns the input at every rank (issue 18): so does droplab
    x = torch.ones(3, 4, 5)
    assert F.dropout2d(x, 0.5, training=False) is x


@pytest.mark.parametrize(
    "fn, shape",
    [
        (F.dropout1d, (2,)),
        (F.dropout1d, (1, 2, 3, 4)),
        (F.dropout2d, (2, 3)),
        (F.dropout2d, (1, 2, 3, 4, 5)),
        (F.dropout3d, (2, 3, 4)),
        (F.dropout3d, (1, 1, 1, 1, 1, 1)),
    ],
)
def test_channel_bad_rank(fn, shape):
    with pytest.raises(ValueError, match=re.escape(f"got {len(shape)}-D input of shape {shape}")):
        fn(torch.ones(shape), 0.5)


# ----------------------------------------------------------------------------------------------
# shared_dropout (Keras' noise_shape)
# ----------------------------------------------------------------------------------------------


def test_shared_dropout_dims_and_noise_shape_agree():
    x = torch.rand(4, 5, 6, dtype=torch.float64) + 0.5
    a = F.shared_dropout(x, 0.5, dims=(1,), seed=9)
    b = F.shared_dropout(x, 0.5, noise_shape=(None, 1, 6), seed=9)
    c = F.shared_dropout(x, 0.5, dims=-2, seed=9)
    assert torch.equal(a, b) and torch.equal(a, c)
    assert torch.equal(a, x * dropout_mask((4, 1, 6), 0.5, seed=9) / 0.5)
    # the mask is constant along the shared dimension
    assert torch.equal((a == 0), (a == 0)[:, :1, :].expand_as(a))
    # with neither, plain element-wise dropout
    assert torch.equal(
        F.shared_dropout(x, 0.5, seed=9), x * dropout_mask(x.shape, 0.5, seed=9) / 0.5
    )


def test_shared_dropout_bad_arguments():
    x = torch.ones(2, 3)
    with pytest.raises(TypeError, match="give dims .* or noise_shape, not both"):
        F.shared_dropout(x, 0.5, dims=0, noise_shape=(1, 3))
    with pytest.raises(
        ValueError, match=re.escape("noise_shape must have one entry per dimension")
    ):
        F.shared_dropout(x, 0.5, noise_shape=(1,))
    with pytest.raises(
        ValueError, match=re.escape("noise_shape[1] must be 1, None or the input's size 3")
    ):
        F.shared_dropout(x, 0.5, noise_shape=(1, 2))
    with pytest.raises(ValueError, match="dims entry 2 is out of range"):
        F.shared_dropout(x, 0.5, dims=2)
    with pytest.raises(TypeError, match="dims must be ints"):
        F.shared_dropout(x, 0.5, dims=("a",))


# ----------------------------------------------------------------------------------------------
# alpha dropout
# ----------------------------------------------------------------------------------------------


def test_alpha_coefficients_formula():
    for p in (0.05, 0.2, 0.5, 0.9):
        a, b = F.alpha_dropout_coefficients(p)
        assert a == pytest.approx(((1 - p) * (1 + p * ALPHA_PRIME**2)) ** -0.5, rel=1e-15)
        assert b == pytest.approx(-a * ALPHA_PRIME * p, rel=1e-15)
        # mean 0 and variance 1 of N(0, 1) input, in closed form
        mean = (1 - p) * b + p * (a * ALPHA_PRIME + b)
        second = (1 - p) * (a**2 + b**2) + p * (a * ALPHA_PRIME + b) ** 2
        assert mean == pytest.approx(0, abs=1e-12) and second == pytest.approx(1, rel=1e-12)


@pytest.mark.parametrize(
    "fn, tfn, mod, tmod, shape",
    [
        (F.alpha_dropout, TF.alpha_dropout, droplab.AlphaDropout, torch.nn.AlphaDropout, (64, 33)),
        (
            F.feature_alpha_dropout,
            TF.feature_alpha_dropout,
            droplab.FeatureAlphaDropout,
            torch.nn.FeatureAlphaDropout,
            (8, 6, 5, 4),
        ),
    ],
    ids=["alpha", "feature-alpha"],
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_alpha_parity_with_torch_given_the_same_rng(fn, tfn, mod, tmod, shape, dtype):
    x = torch.randn(shape, dtype=dtype)
    torch.manual_seed(3)
    ours = fn(x, 0.25)
    torch.manual_seed(3)
    theirs = tfn(x, 0.25, training=True)
    assert torch.equal(ours, theirs)
    torch.manual_seed(4)
    ours = mod(0.6)(x)
    torch.manual_seed(4)
    theirs = tmod(0.6)(x)
    assert torch.equal(ours, theirs)
    assert torch.equal(mod(0.6).eval()(x), tmod(0.6).eval()(x))
    assert torch.equal(fn(x, 1.0), tfn(x, 1.0, training=True))  # zeros, both


def test_alpha_formula_on_the_seeded_mask():
    x = torch.randn(40, 30, dtype=torch.float64)
    p = 0.3
    a, b = F.alpha_dropout_coefficients(p)
    keep = dropout_mask(x.shape, p, seed=21)
    expected = torch.where(keep, a * x + b, torch.tensor(a * ALPHA_PRIME + b, dtype=x.dtype))
    torch.testing.assert_close(F.alpha_dropout(x, p, seed=21), expected, rtol=1e-14, atol=1e-14)
    fkeep = dropout_mask((40, 30), p, seed=21)[..., None, None]
    x4 = torch.randn(40, 30, 2, 3, dtype=torch.float64)
    expected = torch.where(fkeep, a * x4 + b, torch.tensor(a * ALPHA_PRIME + b, dtype=x.dtype))
    torch.testing.assert_close(
        F.feature_alpha_dropout(x4, p, seed=21), expected, rtol=1e-14, atol=1e-14
    )


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_alpha_keeps_mean_zero_variance_one_on_selu_normal_input(p):
    n = 400_000
    x = torch.randn(n, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    y = F.alpha_dropout(x, p, seed=1)
    # 5 standard errors, from the sample itself
    assert abs(y.mean().item()) < 5 * y.std().item() / math.sqrt(n)
    assert abs(y.pow(2).mean().item() - 1) < 5 * y.pow(2).std().item() / math.sqrt(n)
    dropped = (
        (y == F.alpha_dropout_coefficients(p)[0] * ALPHA_PRIME + F.alpha_dropout_coefficients(p)[1])
        .double()
        .mean()
        .item()
    )
    assert abs(dropped - p) < binomial_bound(p, n)


def test_alpha_gradcheck_and_edges():
    x = torch.randn(6, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: F.alpha_dropout(t, 0.4, seed=2), (x,))
    x4 = torch.randn(3, 4, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: F.feature_alpha_dropout(t, 0.4, seed=2), (x4,))
    z = torch.randn(4, 4)
    assert F.alpha_dropout(z, 0.0) is z and F.alpha_dropout(z, 0.5, training=False) is z
    y = z.clone()
    assert F.alpha_dropout(y, 0.5, inplace=True, seed=3) is y
    assert torch.equal(y, F.alpha_dropout(z, 0.5, seed=3))
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        F.feature_alpha_dropout(torch.ones(3), 0.5)


# ----------------------------------------------------------------------------------------------
# Gaussian dropout
# ----------------------------------------------------------------------------------------------


def test_gaussian_noise_has_mean_one_and_variance_p_over_1_minus_p():
    p, n = 0.3, 400_000
    x = torch.full((n,), 2.0, dtype=torch.float64)
    e = F.gaussian_dropout(x, p, generator=torch.Generator().manual_seed(0)) / 2.0
    var = p / (1 - p)
    assert abs(e.mean().item() - 1) < 5 * math.sqrt(var / n)
    # the variance of a normal sample variance is 2 sigma^4 / (n - 1)
    assert abs(e.var().item() - var) < 5 * var * math.sqrt(2 / (n - 1))
    same = F.gaussian_dropout(
        torch.ones(5), keep_prob=0.7, generator=torch.Generator().manual_seed(1)
    )
    again = F.gaussian_dropout(torch.ones(5), p=0.3, generator=torch.Generator().manual_seed(1))
    assert torch.equal(same, again)


def test_gaussian_eval_gradcheck_and_p_one():
    x = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    assert F.gaussian_dropout(x, 0.5, training=False) is x
    layer = droplab.GaussianDropout(0.5).eval()
    assert (
        layer(x) is x
        and layer.stochastic
        and repr(layer) == "GaussianDropout(p=0.5, inplace=False)"
    )

    def fixed(t):
        return F.gaussian_dropout(t, 0.5, generator=torch.Generator().manual_seed(3))

    assert torch.autograd.gradcheck(fixed, (x,))
    # dy/dx is the noise itself
    y = fixed(x)
    (g,) = torch.autograd.grad(y.sum(), x)
    torch.testing.assert_close(g, (y / x).detach())
    with pytest.raises(ValueError, match=re.escape("p must be a real number in [0, 1), got 1.0")):
        F.gaussian_dropout(x, 1.0)
    with pytest.raises(ValueError, match=re.escape("p must be a real number in [0, 1), got 1.0")):
        droplab.GaussianDropout(1.0)
    with pytest.raises(ValueError, match=re.escape("keep_prob must be a real number in (0, 1]")):
        droplab.GaussianDropout(keep_prob=0.0)


# ----------------------------------------------------------------------------------------------
# DropConnect
# ----------------------------------------------------------------------------------------------


def test_dropconnect_is_a_linear_with_linears_parameters_and_init():
    torch.manual_seed(0)
    ours = droplab.DropConnect(7, 3, p=0.5)
    torch.manual_seed(0)
    theirs = torch.nn.Linear(7, 3)
    assert list(ours.state_dict()) == ["weight", "bias"]
    assert torch.equal(ours.weight, theirs.weight) and torch.equal(ours.bias, theirs.bias)
    ours.load_state_dict(theirs.state_dict())
    assert isinstance(ours, torch.nn.Linear) and ours.stochastic
    assert repr(ours) == (
        "DropConnect(in_features=7, out_features=3, bias=True, p=0.5, mode='inverted')"
    )
    x = torch.randn(4, 7)
    assert torch.equal(ours.eval()(x), theirs(x))
    assert droplab.DropConnect(2, 2, bias=False).bias is None
    wrapped = droplab.DropConnect.from_linear(theirs, 0.2, seed=1)
    assert wrapped.weight is theirs.weight and wrapped.bias is theirs.bias


def test_dropconnect_drops_weights_with_inverted_scaling():
    x = torch.randn(5, 6, dtype=torch.float64)
    w = torch.randn(4, 6, dtype=torch.float64)
    b = torch.randn(4, dtype=torch.float64)
    m = dropout_mask(w.shape, 0.4, seed=8)
    torch.testing.assert_close(F.drop_connect(x, w, b, 0.4, seed=8), x @ (w * m / 0.6).T + b)
    torch.testing.assert_close(
        F.drop_connect(x, w, b, 0.4, mode="classic", seed=8), x @ (w * m).T + b
    )
    torch.testing.assert_close(F.drop_connect(x, w, b, 0.4, training=False), x @ w.T + b)
    torch.testing.assert_close(
        F.drop_connect(x, w, b, 0.4, training=False, mode="classic"), x @ (0.6 * w).T + b
    )
    torch.testing.assert_close(F.drop_connect(x, w, b, 1.0), b.expand(5, 4))
    # statistics: the fraction of dropped weights
    big = torch.ones(300, 300)
    dropped = (F.drop_connect(torch.eye(300), big, None, 0.4, seed=1) == 0).double().mean().item()
    assert abs(dropped - 0.4) < binomial_bound(0.4, big.numel())
    layer = droplab.DropConnect(6, 4, p=0.4, seed=5, dtype=torch.float64)
    expected = x @ (layer.weight * dropout_mask((4, 6), 0.4, seed=derive_seed(5, 0)) / 0.6).T
    torch.testing.assert_close(layer(x), expected + layer.bias)


def test_dropconnect_gradcheck():
    x = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
    b = torch.randn(4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, w, b: F.drop_connect(x, w, b, 0.5, seed=3), (x, w, b))


def test_dropconnect_bad_weight():
    with pytest.raises(
        ValueError, match=re.escape("weight must have shape (out_features, in_features)")
    ):
        F.drop_connect(torch.ones(2, 3), torch.ones(3), None, 0.5)
    with pytest.raises(TypeError, match="weight must be a floating-point tensor"):
        F.drop_connect(torch.ones(2, 3), torch.ones(2, 3, dtype=torch.int64), None, 0.5)


# ----------------------------------------------------------------------------------------------
# drop-path
# ----------------------------------------------------------------------------------------------


def _timm_style_drop_path(x, drop_prob, scale_by_keep=True):
    # timm's rule, written out: a per-sample Bernoulli(keep) tensor, divided by keep if asked
    keep = 1 - drop_prob
    r = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
    if keep > 0 and scale_by_keep:
        r.div_(keep)
    return x * r


@pytest.mark.parametrize("scale_by_keep", [True, False])
def test_drop_path_matches_timm_given_the_same_rng(scale_by_keep):
    x = torch.randn(16, 3, 4, dtype=torch.float64)
    torch.manual_seed(1)
    ours = F.drop_path(x, 0.3, scale_by_keep=scale_by_keep)
    torch.manual_seed(1)
    theirs = _timm_style_drop_path(x, 0.3, scale_by_keep)
    torch.testing.assert_close(ours, theirs, rtol=1e-15, atol=0)


def test_drop_path_drops_whole_samples():
    p, n = 0.25, 4000
    y = F.drop_path(torch.ones(n, 3, 2), p, seed=4)
    rows = y.flatten(1)
    assert torch.all((rows == 0).all(1) | (rows == 1 / (1 - p)).all(1))
    dropped = (rows[:, 0] == 0).double().mean().item()
    assert abs(dropped - p) < binomial_bound(p, n)
    assert torch.equal(y, torch.ones(n, 3, 2) * dropout_mask((n, 1, 1), p, seed=4) / (1 - p))


def test_drop_path_edges_modes_and_module():
    x = torch.randn(6, 4)
    assert torch.equal(F.drop_path(x, 1.0), torch.zeros_like(x))
    assert not torch.isnan(F.drop_path(x, 1.0, scale_by_keep=False)).any()
    assert F.drop_path(x, 0.5, training=False) is x and F.drop_path(x, 0.0) is x
    torch.testing.assert_close(F.drop_path(x, 0.5, training=False, mode="classic"), x * 0.5)
    layer = droplab.DropPath(0.2)
    assert layer.p == 0.2 and layer.stochastic and droplab.DropPath().p == 0.1
    assert repr(layer) == "DropPath(p=0.2, scale_by_keep=True, mode='inverted')"
    xd = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: F.drop_path(t, 0.5, seed=2), (xd,))
    with pytest.raises(ValueError, match="got a 0-d tensor"):
        F.drop_path(torch.tensor(1.0), 0.5)
    with pytest.raises(TypeError, match="scale_by_keep must be a bool"):
        droplab.DropPath(0.1, scale_by_keep="yes")


# ----------------------------------------------------------------------------------------------
# DropBlock
# ----------------------------------------------------------------------------------------------


def test_drop_block_gamma_is_timms_formula():
    # gamma = p * H * W / (kh * kw) / ((H - kh + 1) * (W - kw + 1)), block clipped to the map
    assert F.drop_block_gamma(0.1, (14, 14), (7, 7)) == pytest.approx(0.1 * 196 / 49 / 64)
    assert F.drop_block_gamma(0.1, (8, 12), (3, 5)) == pytest.approx(0.1 * 96 / 15 / (6 * 8))
    assert F.drop_block_gamma(0.2, (4, 6), (7, 7)) == pytest.approx(0.2 * 24 / 24 / 1)
    assert F.drop_block_gamma(0.1, (4, 6), (7, 3)) == pytest.approx(0.1 * 24 / 12 / 4)
    assert F.drop_block_gamma(0.1, (8, 8), (3, 3), 2.0) == pytest.approx(2 * 0.1 * 64 / 9 / 36)
    assert F.drop_block_gamma(1.0, (4, 4), (2, 2), 3.0) == 1.0  # clipped to a probability


def _blocks_from_starts(starts: torch.Tensor, kh: int, kw: int, h: int, w: int) -> torch.Tensor:
    """The dropped region: the union of kh x kw rectangles at every start, drawn by loops."""
    dropped = torch.zeros(starts.shape[:-2] + (h, w), dtype=torch.bool)
    for idx in starts.nonzero().tolist():
        *lead, i, j = idx
        dropped[(*lead, slice(i, i + kh), slice(j, j + kw))] = True
    return dropped


@pytest.mark.parametrize(
    "block, size",
    [(3, (9, 10)), (4, (9, 10)), ((2, 5), (8, 8)), (7, (5, 6))],
    ids=["odd", "even", "rect", "clipped"],
)
@pytest.mark.parametrize("couple_channels", [True, False])
def test_drop_block_drops_exactly_the_seeded_blocks(block, size, couple_channels):
    n, c, (h, w) = 3, 4, size
    bh, bw = (block, block) if isinstance(block, int) else block
    kh, kw = min(bh, h), min(bw, w)
    p = 0.2
    x = torch.rand(n, c, h, w, dtype=torch.float64) + 0.5
    y = F.drop_block_2d(x, p, block_size=block, couple_channels=couple_channels, seed=6)
    gamma = F.drop_block_gamma(p, (h, w), (kh, kw))
    starts = ~dropout_mask((n, 1 if couple_channels else c, h - kh + 1, w - kw + 1), gamma, seed=6)
    keep = ~_blocks_from_starts(starts, kh, kw, h, w)
    keep = keep.expand(n, c, h, w)
    scale = keep.numel() / keep.sum().item()
    torch.testing.assert_close(y, x * keep * scale, rtol=1e-15, atol=0)
    if couple_channels:
        assert torch.equal(y == 0, (y == 0)[:, :1].expand_as(y))


def test_drop_block_drop_fraction_matches_its_expectation():
    n, c, h, w, k, p = 64, 16, 16, 16, 5, 0.15
    y = F.drop_block_2d(torch.ones(n, c, h, w), p, block_size=k, couple_channels=False, seed=3)
    gamma = F.drop_block_gamma(p, (h, w), (k, k))
    # element (i, j) is covered by cover[i] * cover[j] possible starts
    idx = torch.arange(h)
    cover = (torch.minimum(idx, torch.tensor(h - k)) - torch.clamp(idx - k + 1, min=0) + 1).double()
    expected = (1 - (1 - gamma) ** (cover[:, None] * cover[None, :])).mean().item()
    per_map = (y == 0).double().mean((-2, -1)).flatten()
    assert abs(per_map.mean().item() - expected) < 5 * per_map.std().item() / math.sqrt(n * c)
    # normalization by the kept fraction: the mean of a constant input is preserved exactly
    torch.testing.assert_close(y.double().mean().item(), 1.0, rtol=1e-6, atol=0)


def test_drop_block_edges_and_module():
    x = torch.randn(2, 3, 6, 6)
    assert torch.equal(F.drop_block_2d(x, 1.0, block_size=3), torch.zeros_like(x))  # never NaN
    assert F.drop_block_2d(x, 0.5, training=False) is x and F.drop_block_2d(x, 0.0) is x
    unscaled = F.drop_block_2d(x, 0.3, block_size=2, scale_by_keep=False, seed=1)
    assert torch.all((unscaled == 0) | (unscaled == x))
    chw = F.drop_block_2d(x[0], 0.3, block_size=3, seed=2)
    assert chw.shape == (3, 6, 6)
    layer = droplab.DropBlock2d(0.1, block_size=5)
    assert repr(layer) == (
        "DropBlock2d(p=0.1, block_size=(5, 5), gamma_scale=1.0, couple_channels=True, "
        "scale_by_keep=True)"
    )
    assert layer.eval()(x) is x and layer.stochastic
    xd = torch.randn(2, 2, 5, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: F.drop_block_2d(t, 0.3, block_size=2, seed=4), (xd,))
    seeded = droplab.DropBlock2d(0.3, block_size=3, seed=9)
    first = seeded(x)
    assert torch.equal(first, F.drop_block_2d(x, 0.3, block_size=3, seed=derive_seed(9, 0)))
    assert seeded.step == 1


@pytest.mark.parametrize(
    "kwargs, exc, msg",
    [
        ({"block_size": 0}, ValueError, "block_size must be a positive int or a pair"),
        ({"block_size": (3, 3, 3)}, ValueError, "block_size must be a positive int or a pair"),
        ({"gamma_scale": 0.0}, ValueError, "gamma_scale must be a positive real number, got 0.0"),
        ({"couple_channels": 1}, TypeError, "couple_channels must be a bool"),
    ],
)
def test_drop_block_bad_arguments(kwargs, exc, msg):
    with pytest.raises(exc, match=re.escape(msg)):
        F.drop_block_2d(torch.ones(1, 1, 4, 4), 0.1, **kwargs)
    with pytest.raises(exc, match=re.escape(msg)):
        droplab.DropBlock2d(0.1, **kwargs)


def test_drop_block_bad_rank():
    with pytest.raises(ValueError, match=re.escape("expected an input of shape (N, C, H, W)")):
        F.drop_block_2d(torch.ones(4, 4), 0.1)


# ----------------------------------------------------------------------------------------------
# locked dropout
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("batch_first", [False, True])
def test_locked_dropout_shares_the_mask_across_time(batch_first):
    t, n, f, p = 7, 50, 40, 0.4
    shape, mshape = ((n, t, f), (n, 1, f)) if batch_first else ((t, n, f), (1, n, f))
    x = torch.rand(shape, dtype=torch.float64) + 0.5
    y = F.locked_dropout(x, p, batch_first=batch_first, seed=2)
    assert torch.equal(y, x * dropout_mask(mshape, p, seed=2) / (1 - p))
    zero = y == 0
    time_dim = 1 if batch_first else 0
    assert torch.equal(zero, zero.narrow(time_dim, 0, 1).expand_as(zero))
    dropped = zero.narrow(time_dim, 0, 1).double().mean().item()
    assert abs(dropped - p) < binomial_bound(p, n * f)
    layer = droplab.LockedDropout(p, batch_first=batch_first, seed=2)
    assert torch.equal(
        layer(x), F.locked_dropout(x, p, batch_first=batch_first, seed=derive_seed(2, 0))
    )
    assert layer.eval()(x) is x


def test_locked_dropout_unbatched_gradcheck_and_rank():
    x = torch.ones(5, 8)
    y = F.locked_dropout(x, 0.5, seed=1)
    assert torch.equal(y, y[:1].expand_as(y))
    xd = torch.randn(4, 2, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: F.locked_dropout(t, 0.5, seed=3), (xd,))
    with pytest.raises(ValueError, match=re.escape("got 4-D input of shape (1, 2, 3, 4)")):
        F.locked_dropout(torch.ones(1, 2, 3, 4), 0.5)
    assert (
        repr(droplab.LockedDropout(0.3))
        == "LockedDropout(p=0.3, batch_first=False, mode='inverted')"
    )


# ----------------------------------------------------------------------------------------------
# every variant: the shared argument checks, stochastic, repr
# ----------------------------------------------------------------------------------------------

FUNCTIONS = {
    "dropout1d": (F.dropout1d, (2, 3, 4)),
    "dropout2d": (F.dropout2d, (2, 3, 4, 4)),
    "dropout3d": (F.dropout3d, (2, 3, 2, 2, 2)),
    "alpha_dropout": (F.alpha_dropout, (2, 3)),
    "feature_alpha_dropout": (F.feature_alpha_dropout, (2, 3)),
    "gaussian_dropout": (F.gaussian_dropout, (2, 3)),
    "drop_path": (F.drop_path, (2, 3)),
    "drop_block_2d": (F.drop_block_2d, (2, 3, 4, 4)),
    "locked_dropout": (F.locked_dropout, (2, 3, 4)),
    "shared_dropout": (F.shared_dropout, (2, 3)),
}
MODULES = [
    droplab.Dropout1d,
    droplab.Dropout2d,
    droplab.Dropout3d,
    droplab.AlphaDropout,
    droplab.FeatureAlphaDropout,
    droplab.GaussianDropout,
    droplab.DropPath,
    droplab.DropBlock2d,
    droplab.LockedDropout,
]


@pytest.mark.parametrize("name", list(FUNCTIONS))
def test_functions_reject_bad_arguments_by_name(name):
    fn, shape = FUNCTIONS[name]
    x = torch.ones(shape)
    accepted = "[0, 1)" if name == "gaussian_dropout" else "[0, 1]"
    with pytest.raises(
        ValueError, match=re.escape(f"p must be a real number in {accepted}, got 1.5")
    ):
        fn(x, 1.5)
    with pytest.raises(
        TypeError, match=re.escape(f"p must be a real number in {accepted}, got str")
    ):
        fn(x, "0.5")
    with pytest.raises(TypeError, match="give p .* or keep_prob .*, not both"):
        fn(x, 0.5, keep_prob=0.5)
    with pytest.raises(TypeError, match="input must be a floating-point tensor"):
        fn(torch.ones(shape, dtype=torch.int64), 0.5)
    assert fn(x, 0.5, training=False).shape == x.shape


@pytest.mark.parametrize(
    "name", ["dropout1d", "dropout2d", "drop_path", "locked_dropout", "shared_dropout"]
)
def test_functions_reject_bad_mode_and_seed(name):
    fn, shape = FUNCTIONS[name]
    x = torch.ones(shape)
    with pytest.raises(
        ValueError, match=re.escape("mode must be one of 'inverted', 'classic', got 'x'")
    ):
        fn(x, 0.5, mode="x")
    with pytest.raises(
        ValueError, match=re.escape("seed must be an int in [0, 2**64 - 1], got -1")
    ):
        fn(x, 0.5, seed=-1)
    with pytest.raises(TypeError, match="give seed or generator, not both"):
        fn(x, 0.5, seed=1, generator=torch.Generator())


@pytest.mark.parametrize("cls", MODULES, ids=lambda c: c.__name__)
def test_modules_contract(cls):
    layer = cls(0.25)
    assert cls.stochastic is True and layer.p == 0.25 and layer.keep_prob == 0.75
    assert repr(layer).startswith(f"{cls.__name__}(p=0.25")
    assert list(layer.state_dict()) == []
    assert cls(keep_prob=0.75).p == 0.25
    accepted = "[0, 1)" if cls is droplab.GaussianDropout else "[0, 1]"
    with pytest.raises(
        ValueError, match=re.escape(f"p must be a real number in {accepted}, got -0.1")
    ):
        cls(-0.1)
    with pytest.raises(TypeError, match="not both"):
        cls(0.5, keep_prob=0.5)
    if cls is not droplab.GaussianDropout:
        with pytest.raises(ValueError, match=re.escape("seed must be an int in [0, 2**64 - 1]")):
            cls(0.5, seed=-3)


def test_mc_dropout_can_find_every_variant():
    model = torch.nn.Sequential(droplab.DropConnect(4, 4), droplab.Dropout1d(), droplab.DropPath())
    assert all(getattr(m, "stochastic", False) for m in model)
