"""droplab.dropout and droplab.functional.apply_mask: contract, statistics, parity, edges, errors."""

from __future__ import annotations

import math
import re

import pytest
import torch
import torch.nn.functional as TF

import droplab
from droplab import functional as F
from droplab.kernels import fast, rng

DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]
MODES = ["inverted", "classic"]


def binomial_bound(p: float, n: int, k: float = 5.0) -> float:
    return k * math.sqrt(p * (1 - p) / n)


@pytest.fixture
def no_fast(monkeypatch):
    """The fast kernels reported unavailable, whatever this machine has."""
    monkeypatch.setattr(
        fast, "fast_available", lambda x, auto=False: (False, "numba is not installed")
    )


@pytest.fixture
def fake_fast(monkeypatch):
    """A fast backend made of the reference mask, recording its calls."""
    calls = []

    def fast_dropout(x, p, scale, seed, inplace=False):
        calls.append(seed)
        y = x * rng.dropout_mask(x.shape, p, seed=seed) * scale
        return x.copy_(y) if inplace else y

    monkeypatch.setattr(fast, "fast_available", lambda x, auto=False: (True, ""))
    monkeypatch.setattr(fast, "fast_dropout", fast_dropout)
    return calls


# ----------------------------------------------------------------------------------------------
# 1. contract
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("seed", [None, 3])
def test_shape_dtype_device_preserved(dtype, mode, training, seed):
    x = torch.randn(4, 5, 6).to(dtype)
    y = droplab.dropout(x, 0.3, training, mode=mode, seed=seed)
    assert y.shape == x.shape and y.dtype == dtype and y.device == x.device


def test_eval_inverted_returns_input_and_classic_scales():
    x = torch.randn(10, 10)
    assert droplab.dropout(x, 0.3, training=False) is x
    torch.testing.assert_close(
        droplab.dropout(x, 0.3, training=False, mode="classic"), x * 0.7, rtol=0, atol=0
    )


def test_keep_prob_is_one_minus_p():
    x = torch.randn(100)
    assert torch.equal(droplab.dropout(x, keep_prob=0.8, seed=1), droplab.dropout(x, 0.2, seed=1))
    c = droplab.dropout(x, keep_prob=0.8, training=False, mode="classic")
    assert torch.equal(c, x * (1 - 0.2))


def test_default_p_is_half():
    x = torch.ones(1000)
    assert torch.equal(droplab.dropout(x, seed=5), droplab.dropout(x, 0.5, seed=5))
    assert set(droplab.dropout(x, seed=5).unique().tolist()) == {0.0, 2.0}


def test_top_level_exports():
    assert droplab.dropout is F.dropout
    assert droplab.dropout_mask is rng.dropout_mask


# ----------------------------------------------------------------------------------------------
# 2. statistics
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("p", [0.5, 0.75, 0.875])  # 1 - p and 1 / (1 - p) exact in binary
@pytest.mark.parametrize("seed", [None, 7])
def test_kept_values_exact(dtype, p, seed):
    torch.manual_seed(0)
    x = (torch.rand(1000) + 0.5).to(dtype)  # no zeros: a zero output means dropped
    y = droplab.dropout(x, p, seed=seed)
    kept = y != 0
    assert 0 < kept.sum() < 1000
    assert torch.equal(y[kept], x[kept] / (1 - p))
    yc = droplab.dropout(x, p, mode="classic", seed=seed)
    assert torch.equal(yc[yc != 0], x[yc != 0])


@pytest.mark.parametrize("p", [0.1, 0.3, 0.7])
def test_kept_values_inexact_scale_within_one_rounding(p):
    x = torch.rand(1000, dtype=torch.float32) + 0.5
    y = droplab.dropout(x, p, seed=1)
    kept = y != 0
    torch.testing.assert_close(y[kept], x[kept] / (1 - p), rtol=2**-23, atol=0)


@pytest.mark.parametrize("p", [0.1, 0.3, 0.5, 0.9])
@pytest.mark.parametrize("seed", [None, 11])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_drop_rate_and_mean_within_binomial_bound(p, seed, dtype):
    n = 100_000
    torch.manual_seed(1)
    y = droplab.dropout(torch.ones(n, dtype=dtype), p, seed=seed).double()
    assert abs((y == 0).double().mean().item() - p) <= binomial_bound(p, n)
    # E[y] = 1, sd of the mean sqrt(p / ((1 - p) n)); plus bf16's rounding of 1 / (1 - p)
    sd = math.sqrt(p / ((1 - p) * n))
    rounding = 0 if dtype == torch.float32 else 2**-8
    assert abs(y.mean().item() - 1) <= 5 * sd + rounding


def test_half_types_draw_in_float32_so_tiny_p_almost_never_drops():
    # a float16 draw is a multiple of 2**-11 and would drop ~2**-11 of the elements at any p > 0
    torch.manual_seed(0)
    for dtype in (torch.float16, torch.bfloat16):
        y = droplab.dropout(torch.ones(200_000, dtype=dtype), 1e-7, backend="torch")
        assert (y == 0).sum().item() <= 3


def test_expectation_is_preserved_over_masks_not_in_one_sample():
    a = torch.tensor([0.2, 0.6, 0.4, 0.9], dtype=torch.float64)
    n = 20_000
    ys = droplab.dropout(a.expand(n, 4), keep_prob=0.5, seed=0)  # n independent masks
    # each element: x / (1 - p) w.p. 1 - p, else 0; sd of the mean x * sqrt(p / (1 - p) / n)
    assert torch.all((ys.mean(0) - a).abs() <= 5 * a * math.sqrt(1 / n))


# ----------------------------------------------------------------------------------------------
# 3. parity
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("p", [0.0, 0.3, 1.0])
def test_gradcheck_float64(mode, p):
    x = torch.randn(3, 7, dtype=torch.float64, requires_grad=True)

    def f(x):
        return droplab.dropout(x, p, mode=mode, seed=9)

    assert torch.autograd.gradcheck(f, (x,))
    assert torch.autograd.gradgradcheck(f, (x,))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_gradient_is_mask_times_scale_for_the_same_mask(mode, dtype):
    p = 0.4
    x = torch.randn(5, 8).to(dtype).requires_grad_()
    g = torch.randn(5, 8).to(dtype)
    droplab.dropout(x, p, mode=mode, seed=3).backward(g)
    m = droplab.dropout_mask(x.shape, p, seed=3)
    scale = 1 / (1 - p) if mode == "inverted" else 1.0
    assert torch.equal(x.grad, g * m * scale)


def test_gradient_unseeded_uses_the_forward_mask():
    x = (torch.rand(1000) + 0.5).requires_grad_()
    y = droplab.dropout(x, 0.5, backend="torch")
    y.sum().backward()
    assert torch.equal(x.grad, (y != 0).float() * 2)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("p", [0.1, 0.5, 0.7])
def test_parity_with_torch_dropout_given_the_same_mask(dtype, p):
    torch.manual_seed(0)
    x = (torch.rand(64, 33) + 0.5).to(dtype).requires_grad_()
    xt = x.detach().clone().requires_grad_()
    yt = TF.dropout(xt, p, training=True)
    mask = yt.detach() != 0
    y = F.apply_mask(x, mask, p)
    g = torch.randn(64, 33).to(dtype)
    y.backward(g)
    yt.backward(g)
    if dtype in (torch.float32, torch.float64):
        assert torch.equal(y, yt)
        assert torch.equal(x.grad, xt.grad)
    else:
        # torch on CPU rounds 1 / (1 - p) to the half type first, then multiplies (two
        # roundings); droplab, like torch's fused CUDA kernel, multiplies in float32 (one)
        torch.testing.assert_close(y, yt, rtol=torch.finfo(dtype).eps, atol=0)
        torch.testing.assert_close(x.grad, xt.grad, rtol=torch.finfo(dtype).eps, atol=0)


def test_seeded_mask_is_dropout_mask_also_for_non_contiguous_input():
    x = torch.randn(6, 10)
    xt = x.t()  # (10, 6), not contiguous
    assert not xt.is_contiguous()
    y = droplab.dropout(xt, 0.5, seed=4)
    assert torch.equal(y, droplab.dropout(xt.contiguous(), 0.5, seed=4))
    assert torch.equal(y != 0, droplab.dropout_mask((10, 6), 0.5, seed=4))


def test_non_contiguous_unseeded_and_expanded_input():
    base = torch.ones(1, 50)
    x = base.expand(40, 50)  # stride 0
    y = droplab.dropout(x, 0.5, backend="torch")
    assert y.shape == (40, 50) and set(y.unique().tolist()) <= {0.0, 2.0}
    assert 0 < (y == 0).sum() < 2000


# determinism


def test_seed_repeats_and_ignores_global_rng():
    x = torch.randn(1000)
    torch.manual_seed(0)
    a = droplab.dropout(x, 0.5, seed=123)
    torch.manual_seed(1)
    b = droplab.dropout(x, 0.5, seed=123)
    assert torch.equal(a, b)
    assert not torch.equal(a, droplab.dropout(x, 0.5, seed=124))
    # a seeded mask draws nothing from the global RNG
    before = torch.get_rng_state()
    droplab.dropout(x, 0.5, seed=123, backend="torch")
    assert torch.equal(before, torch.get_rng_state())


@pytest.mark.parametrize("backend", ["torch", "auto"])
def test_manual_seed_and_generator_make_runs_repeatable(backend):
    x = torch.randn(1000)
    torch.manual_seed(5)
    a = droplab.dropout(x, 0.5, backend=backend)
    torch.manual_seed(5)
    assert torch.equal(a, droplab.dropout(x, 0.5, backend=backend))
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    before = torch.get_rng_state()
    a = droplab.dropout(x, 0.5, generator=g1, backend=backend)
    assert torch.equal(a, droplab.dropout(x, 0.5, generator=g2, backend=backend))
    assert torch.equal(before, torch.get_rng_state())  # the global RNG untouched


def test_unseeded_torch_mask_is_float32_uniform_against_p():
    x = torch.ones(100, dtype=torch.float16)
    g = torch.Generator().manual_seed(0)
    y = droplab.dropout(x, 0.3, generator=g, backend="torch")
    u = torch.rand(100, dtype=torch.float32, generator=torch.Generator().manual_seed(0))
    assert torch.equal(y != 0, u >= 0.3)


# backends


def test_auto_with_a_seed_gives_the_same_bits_as_torch():
    # holds whichever backend "auto" picks on this machine
    x = torch.randn(257, 31)
    for mode in MODES:
        a = droplab.dropout(x, 0.3, mode=mode, seed=17, backend="auto")
        assert torch.equal(a, droplab.dropout(x, 0.3, mode=mode, seed=17, backend="torch"))


def test_fast_unavailable_says_why(no_fast):
    x = torch.randn(10)
    msg = "backend='fast' cannot run here: numba is not installed"
    for training in (True, False):
        with pytest.raises(ValueError, match=re.escape(msg)):
            droplab.dropout(x, 0.5, training, backend="fast")
    assert torch.equal(
        droplab.dropout(x, 0.5, seed=1, backend="auto"),
        droplab.dropout(x, 0.5, seed=1, backend="torch"),
    )


def test_auto_routes_to_fast_with_seed_from_the_torch_rng(fake_fast):
    x = torch.randn(100)
    y = droplab.dropout(x, 0.5, seed=8)
    assert fake_fast == [8]
    assert torch.equal(y, droplab.dropout(x, 0.5, seed=8, backend="torch"))
    torch.manual_seed(2)
    a = droplab.dropout(x, 0.5)
    torch.manual_seed(2)
    b = droplab.dropout(x, 0.5, backend="fast")
    assert torch.equal(a, b) and fake_fast[1] == fake_fast[2]
    g = torch.Generator().manual_seed(2)
    droplab.dropout(x, 0.5, generator=g)
    assert fake_fast[3] == torch.randint(0, 2**62, (), generator=torch.Generator().manual_seed(2))
    # no random numbers where the kernel would not run
    n = len(fake_fast)
    droplab.dropout(x, 0.0)
    droplab.dropout(x, 0.5, training=False)
    droplab.dropout(x, 1.0)
    assert len(fake_fast) == n


def test_auto_asks_the_fast_module_whether_fast_is_the_faster_choice(monkeypatch, fake_fast):
    # available, but not the faster choice (as for small tensors): auto stays with torch
    monkeypatch.setattr(fast, "fast_available", lambda x, auto=False: (not auto, "too small"))
    x = torch.randn(10)
    droplab.dropout(x, 0.5, seed=1)
    assert fake_fast == []
    droplab.dropout(x, 0.5, seed=1, backend="fast")
    assert fake_fast == [1]


@pytest.mark.skipif(
    not fast.fast_available(torch.ones(1))[0], reason="the fast kernels cannot run here"
)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", MODES)
def test_real_fast_backend_gives_the_torch_bits(dtype, mode):
    x = torch.randn(65, 33).to(dtype).t().requires_grad_()  # non-contiguous
    xt = x.detach().clone().requires_grad_()
    y = droplab.dropout(x, 0.3, mode=mode, seed=21, backend="fast")
    yt = droplab.dropout(xt, 0.3, mode=mode, seed=21, backend="torch")
    assert torch.equal(y, yt)
    g = torch.randn(33, 65).to(dtype)
    y.backward(g)
    yt.backward(g)
    assert torch.equal(x.grad, xt.grad)


def test_inplace_routes_to_the_fast_kernel(fake_fast):
    for backend in ("auto", "fast"):
        x = torch.randn(100)
        ref = droplab.dropout(x, 0.5, seed=1, backend="torch")
        y = droplab.dropout(x, 0.5, seed=1, backend=backend, inplace=True)
        assert y is x and torch.equal(x, ref)
    assert fake_fast == [1, 1]


# ----------------------------------------------------------------------------------------------
# 4. edges
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("training", [True, False])
def test_p0_returns_input_and_draws_nothing(mode, training):
    x = torch.randn(100)
    before = torch.get_rng_state()
    assert droplab.dropout(x, 0.0, training, mode=mode) is x
    assert droplab.dropout(x, keep_prob=1.0, training=training, mode=mode) is x
    assert torch.equal(before, torch.get_rng_state())


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_p1_training_gives_zeros_never_nan(mode, dtype):
    x = torch.randn(100).to(dtype).requires_grad_()
    y = droplab.dropout(x, 1.0, mode=mode)
    assert torch.equal(y, torch.zeros_like(y)) and not y.isnan().any()
    y.sum().backward()
    assert torch.equal(x.grad, torch.zeros_like(x))
    assert torch.equal(droplab.dropout(x, 1.0, seed=1, mode=mode), torch.zeros_like(x))


def test_p1_eval():
    x = torch.randn(10)
    assert droplab.dropout(x, 1.0, training=False) is x
    assert torch.equal(droplab.dropout(x, 1.0, training=False, mode="classic"), torch.zeros(10))


@pytest.mark.parametrize("shape", [(0,), (3, 0, 2), ()])
@pytest.mark.parametrize("seed", [None, 1])
@pytest.mark.parametrize("mode", MODES)
def test_empty_and_zero_dim(shape, seed, mode):
    x = torch.full(shape, 3.0)
    y = droplab.dropout(x, 0.5, mode=mode, seed=seed)
    assert y.shape == x.shape
    if x.numel():
        assert y.item() in ((0.0, 6.0) if mode == "inverted" else (0.0, 3.0))


def test_zero_dim_gradient():
    x = torch.tensor(2.0, requires_grad=True)
    y = droplab.dropout(x, 0.5, seed=0)
    y.backward()
    assert x.grad.item() == (2.0 if y.item() else 0.0)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("training", [True, False])
def test_inplace(mode, training):
    x = torch.randn(50)
    expected = droplab.dropout(x, 0.5, training, mode=mode, seed=2)
    version = x._version
    y = droplab.dropout(x, 0.5, training, mode=mode, seed=2, inplace=True)
    assert y is x and torch.equal(x, expected)
    if training or mode == "classic":
        assert x._version > version


def test_inplace_autograd_on_non_leaf_and_leaf_error():
    w = torch.randn(20, requires_grad=True)
    h = w * 3
    y = droplab.dropout(h, 0.5, seed=6, inplace=True)
    assert y is h
    y.sum().backward()
    assert torch.equal(w.grad, 3 * 2 * droplab.dropout_mask((20,), 0.5, seed=6).float())
    with pytest.raises(RuntimeError, match="in-place"):
        droplab.dropout(torch.randn(3, requires_grad=True), 0.5, inplace=True)


def test_non_finite_inputs_follow_torch():
    # a dropped element is x * 0, as in torch: NaN stays NaN; kept inf stays inf
    x = torch.tensor([float("nan"), float("inf"), 1.0, 2.0])
    mask = torch.tensor([False, True, False, True])
    y = F.apply_mask(x, mask, 0.5)
    assert y[0].isnan() and y[1] == float("inf") and y[2] == 0 and y[3] == 4


# apply_mask


def test_apply_mask_broadcast_mask_eval_and_classic():
    x = torch.ones(2, 3, 4)
    m = torch.tensor([True, False, True]).reshape(1, 3, 1)  # per channel
    y = F.apply_mask(x, m, 0.5)
    assert torch.equal(y, x * m * 2)
    assert torch.equal(F.apply_mask(x, m, 0.5, mode="classic"), x * m)
    assert F.apply_mask(x, m, 0.5, training=False) is x
    assert torch.equal(F.apply_mask(x, m, 0.5, mode="classic", training=False), x * 0.5)


# ----------------------------------------------------------------------------------------------
# errors: one test per invalid input, message naming the argument and the range
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "exc", "msg"),
    [
        ({"p": -0.1}, ValueError, "p must be a real number in [0, 1], got -0.1"),
        ({"p": 1.5}, ValueError, "p must be a real number in [0, 1], got 1.5"),
        ({"p": float("nan")}, ValueError, "p must be a real number in [0, 1], got nan"),
        ({"p": True}, TypeError, "p must be a real number in [0, 1], got bool True"),
        ({"p": "0.5"}, TypeError, "p must be a real number in [0, 1], got str '0.5'"),
        (
            {"p": torch.tensor([0.1, 0.2])},
            TypeError,
            "p must be a real number in [0, 1], got a tensor of shape (2,)",
        ),
        ({"keep_prob": 1.2}, ValueError, "keep_prob must be a real number in [0, 1], got 1.2"),
        ({"p": 0.5, "keep_prob": 0.5}, TypeError, "give p (drop probability) or keep_prob"),
        ({"mode": "bogus"}, ValueError, "mode must be one of 'inverted', 'classic', got 'bogus'"),
        (
            {"backend": "cuda"},
            ValueError,
            "backend must be one of 'auto', 'torch', 'fast', got 'cuda'",
        ),
        ({"seed": -1}, ValueError, "seed must be an int in [0, 2**64 - 1], got -1"),
        ({"seed": 2**64}, ValueError, "seed must be an int in [0, 2**64 - 1]"),
        ({"seed": 1.5}, TypeError, "seed must be an int in [0, 2**64 - 1], got float 1.5"),
        ({"generator": 3}, TypeError, "generator must be a torch.Generator or None, got int"),
    ],
)
@pytest.mark.parametrize("training", [True, False])
def test_invalid_arguments(kwargs, exc, msg, training):
    with pytest.raises(exc, match=re.escape(msg)):
        droplab.dropout(torch.ones(3), training=training, **kwargs)


def test_p_as_one_element_tensor_is_accepted():
    x = torch.ones(10)
    assert torch.equal(
        droplab.dropout(x, torch.tensor(0.5), seed=1), droplab.dropout(x, 0.5, seed=1)
    )


@pytest.mark.parametrize("x", [torch.ones(3, dtype=torch.int64), torch.ones(3, dtype=torch.bool)])
def test_integer_and_bool_input_is_a_type_error(x):
    msg = f"input must be a floating-point tensor (float16, bfloat16, float32 or float64), got dtype {x.dtype}"
    with pytest.raises(TypeError, match=re.escape(msg)):
        droplab.dropout(x, 0.5)


def test_non_tensor_input_is_a_type_error():
    with pytest.raises(TypeError, match=re.escape("input must be a torch.Tensor, got list")):
        droplab.dropout([1.0, 2.0], 0.5)


@pytest.mark.parametrize(
    ("mask", "kwargs", "exc", "msg"),
    [
        (torch.tensor([0.5, 1.0, 0.0]), {"p": 0.5}, ValueError, "mask must be a bool tensor or"),
        (torch.ones(2, dtype=torch.bool), {"p": 0.5}, ValueError, "does not broadcast"),
        (torch.ones(2, 3, dtype=torch.bool), {"p": 0.5}, ValueError, "does not broadcast"),
        ([1, 0, 1], {"p": 0.5}, TypeError, "mask must be a torch.Tensor, got list"),
        (torch.ones(3), {}, TypeError, "give p (drop probability) or keep_prob"),
        (torch.ones(3), {"p": 2.0}, ValueError, "p must be a real number in [0, 1], got 2.0"),
    ],
)
def test_apply_mask_invalid(mask, kwargs, exc, msg):
    with pytest.raises(exc, match=re.escape(msg)):
        F.apply_mask(torch.ones(3), mask, **kwargs)


# ----------------------------------------------------------------------------------------------
# the tutorial examples
# ----------------------------------------------------------------------------------------------


def test_d2l_dropout_on_arange_16():
    X = torch.arange(16, dtype=torch.float32).reshape(2, 8)
    assert torch.equal(droplab.dropout(X, 0.0), X)
    assert torch.equal(droplab.dropout(X, 1.0), torch.zeros(2, 8))
    y = droplab.dropout(X, 0.5, seed=0)
    kept = droplab.dropout_mask((2, 8), 0.5, seed=0)
    assert torch.equal(y, torch.where(kept, X * 2, 0.0))
    # a known answer: the seeded mask is part of the contract, on every backend
    assert kept.int().tolist() == [[0, 1, 1, 1, 1, 0, 1, 1], [0, 1, 1, 0, 1, 1, 0, 0]]


def test_keep_prob_worked_example_with_injected_mask():
    A = torch.tensor([0.2, 0.6, 0.4, 0.9])
    mask = torch.tensor([1, 0, 1, 0])
    y = F.apply_mask(A, mask, keep_prob=0.5)
    torch.testing.assert_close(y, torch.tensor([0.4, 0.0, 0.8, 0.0]))
    # means: 0.525 before, 0.15 after the mask, 0.3 after the scaling
    assert math.isclose(A.mean().item(), 0.525, rel_tol=1e-6)
    assert math.isclose((A * mask).mean().item(), 0.15, rel_tol=1e-6)
    assert math.isclose(y.mean().item(), 0.3, rel_tol=1e-6)


@pytest.mark.parametrize("training", ["False", 1, 0, None])
def test_training_must_be_a_bool_as_in_torch(training):
    x = torch.ones(2, 3, 4, 4)
    with pytest.raises(TypeError):
        TF.dropout(x, 0.5, training=training)  # torch refuses it too
    fns = [F.dropout, F.dropout2d, F.alpha_dropout, F.gaussian_dropout, F.drop_path]
    for fn in fns:
        with pytest.raises(
            TypeError, match=re.escape(f"training must be a bool, got {type(training).__name__}")
        ):
            fn(x, 0.5, training)
