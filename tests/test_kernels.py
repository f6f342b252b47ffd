"""The fast CPU dropout kernels: bit parity with the reference mask, statistics, thread-count
invariance, autograd, saved bytes and the traced (torch.compile) route.

Statistical bounds are derived from the distribution: ``K`` standard deviations of the statistic
under the null hypothesis (K = 5: a false alarm once in ~1.7 million tests per assertion).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("numba")

from droplab.kernels import cpu  # noqa: E402
from droplab.kernels.fast import (  # noqa: E402
    AUTO_MIN_NUMEL,
    fast_available,
    fast_dropout,
    fast_mask,
)
from droplab.kernels.rng import dropout_mask, keep_threshold, random_words  # noqa: E402
from droplab.scratch import mask as np_mask  # noqa: E402

K = 5.0
N = 1 << 20
SEEDS = (0, 1, 12345, 2**63, 2**64 - 1)


def reference_keep(numel: int, p: float, seed: int, offset: int = 0) -> np.ndarray:
    """The keep bits from the torch reference (``droplab.kernels.rng``)."""
    return (random_words(numel, seed, offset=offset) >= keep_threshold(p)).numpy()


# ----------------------------------------------------------------------------------------------
# parity: numba == torch reference == NumPy twin, bit for bit
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize(
    "numel", [0, 1, 2, 3, 7, 8, 9, 1001, cpu.CHUNK - 1, cpu.CHUNK + 3, 3 * cpu.CHUNK + 5]
)
@pytest.mark.parametrize("offset", [0, 1, 6, 2 * cpu.CHUNK - 1])
def test_mask_kernel_matches_reference_and_numpy(seed, numel, offset):
    got = cpu.mask_cpu(numel, 0.3, seed, offset=offset)
    ref = reference_keep(numel, 0.3, seed, offset)
    u = np_mask.random_words(numel, seed, offset=offset)
    np.testing.assert_array_equal(got, ref)
    np.testing.assert_array_equal(got, u >= keep_threshold(0.3))


@pytest.mark.parametrize("shape", [(), (0,), (5,), (3, 5, 7), (257, 129)])
@pytest.mark.parametrize("p", [0.0, 0.1, 0.5, 1.0])
def test_fast_mask_matches_public_masks(shape, p):
    torch_mask = dropout_mask(shape, p, seed=99)
    assert torch.equal(fast_mask(shape, p, seed=99), torch_mask)
    np.testing.assert_array_equal(np_mask.dropout_mask(shape, p, seed=99), torch_mask.numpy())


@pytest.mark.parametrize("offset", [0, 1, 3])
@pytest.mark.parametrize("numel", [1, 2, 5, 100, 2 * cpu.CHUNK + 1, cpu.SERIAL_BELOW + 17])
def test_scale_kernels_match_reference(numel, offset):
    rng = np.random.default_rng(0)
    keep = reference_keep(numel, 0.25, 7, offset)
    for dtype in (np.float32, np.float64):
        x = rng.standard_normal(numel).astype(dtype)
        scale = dtype(1 / 0.75)
        want = x * np.where(keep, scale, dtype(0))
        np.testing.assert_array_equal(cpu.dropout_cpu(x, 0.25, 1 / 0.75, 7, offset=offset), want)
    xb = torch.randn(numel).bfloat16()
    yb = cpu.dropout_bf16_cpu(
        xb.view(torch.int16).numpy().view(np.uint16), 0.25, 1 / 0.75, 7, offset=offset
    )
    want_b = xb * torch.from_numpy(keep) * (1 / 0.75)
    assert torch.equal(torch.from_numpy(yb.view(np.int16)), want_b.view(torch.int16))


def test_in_place_kernel():
    x = np.random.default_rng(1).standard_normal(50_000).astype(np.float32)
    want = cpu.dropout_cpu(x, 0.5, 2.0, 3)
    cpu.dropout_cpu(x, 0.5, 2.0, 3, out=x)
    np.testing.assert_array_equal(x, want)


def test_bfloat16_rounding_and_specials_match_torch():
    # values whose product with scale needs rounding, plus inf, nan, -0, subnormals
    x = torch.cat(
        [
            torch.randn(10_000),
            torch.tensor([float("inf"), -float("inf"), float("nan"), -0.0, 1e-40, 3.0e38]),
        ]
    ).bfloat16()
    y = fast_dropout(x, 0.3, 1 / 0.7, 5)
    want = x * dropout_mask(x.shape, 0.3, seed=5) * (1 / 0.7)
    assert torch.equal(y.view(torch.int16)[~want.isnan()], want.view(torch.int16)[~want.isnan()])
    assert torch.equal(y.isnan(), want.isnan())


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_fast_dropout_values(dtype):
    x = torch.randn(129, 65, dtype=dtype)
    y = fast_dropout(x, 0.2, 1.25, 2**64 - 2)
    want = x * dropout_mask(x.shape, 0.2, seed=2**64 - 2) * 1.25
    assert y.dtype == dtype and y.shape == x.shape
    assert torch.equal(y, want)


def test_fast_dropout_non_contiguous_uses_logical_index_and_keeps_dense_layouts():
    base = torch.randn(40, 60)
    for x in (base.t(), base[::3, 1::2], base.unsqueeze(0).expand(2, 40, 60)):
        want = x.contiguous() * dropout_mask(x.shape, 0.5, seed=8) * 2.0
        y = fast_dropout(x, 0.5, 2.0, 8)
        assert torch.equal(y, want)
    # dense but permuted (a transpose, channels_last): the output has the input's strides,
    # as torch's x * noise has; strided slices come back contiguous, as from torch too
    for x in (base.t(), torch.randn(2, 3, 4, 5).to(memory_format=torch.channels_last)):
        y = fast_dropout(x, 0.5, 2.0, 8)
        assert y.stride() == x.stride() == torch.nn.functional.dropout(x, 0.5).stride()
        assert torch.equal(y, x.contiguous() * dropout_mask(x.shape, 0.5, seed=8) * 2.0)
    assert fast_dropout(base[::3, 1::2], 0.5, 2.0, 8).is_contiguous()


def test_fast_dropout_edges():
    assert fast_dropout(torch.empty(0, 3), 0.5, 2.0, 1).shape == (0, 3)
    x0 = torch.tensor(3.0)
    assert fast_dropout(x0, 0.5, 2.0, 1).shape == ()
    x = torch.randn(1000)
    assert torch.equal(fast_dropout(x, 0.0, 1.0, 4), x)
    assert torch.equal(fast_dropout(x, 1.0, 0.0, 4), torch.zeros(1000))
    assert not fast_dropout(x, 1.0, 1.0, 4).any()


# ----------------------------------------------------------------------------------------------
# statistics (on the kernel's own output)
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("p", [0.001, 0.1, 0.5, 0.9, 0.999])
@pytest.mark.parametrize("seed", [0, 2**63 + 11])
def test_drop_rate_within_binomial_bound(p, seed):
    dropped = (~cpu.mask_cpu(N, p, seed)).mean()
    assert abs(dropped - p) <= K * math.sqrt(p * (1 - p) / N), (p, dropped)


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    a = a.astype(np.float64) - a.mean()
    b = b.astype(np.float64) - b.mean()
    return float((a * b).sum() / math.sqrt((a * a).sum() * (b * b).sum()))


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_lag_correlations_near_zero(p):
    keep = cpu.mask_cpu(N, p, 2024)
    for lag in (1, 2, 4, 8, 16, 32, 64, 1024):
        r = _corr(keep[:-lag], keep[lag:])
        # under independence sqrt(n) * r is approximately N(0, 1)
        assert abs(r) <= K / math.sqrt(N - lag), (lag, r)


@pytest.mark.parametrize("seed", [0, 1, 1000, 2**32 - 1, 2**63 - 1, 2**64 - 2])
def test_neighbouring_seeds_uncorrelated(seed):
    a = cpu.mask_cpu(N, 0.5, seed)
    b = cpu.mask_cpu(N, 0.5, seed + 1)
    assert abs(_corr(a, b)) <= K / math.sqrt(N)
    # and the streams are not shifted copies of each other
    assert abs(_corr(a[:-1], b[1:])) <= K / math.sqrt(N - 1)
    assert abs(_corr(a[1:], b[:-1])) <= K / math.sqrt(N - 1)


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_runs_test(p):
    # Wald-Wolfowitz: the number of runs of equal bits, against its mean and variance
    keep = cpu.mask_cpu(N, p, 77)
    n1 = int(keep.sum())
    n0 = N - n1
    runs = 1 + int(np.count_nonzero(keep[1:] != keep[:-1]))
    mu = 2.0 * n1 * n0 / N + 1
    var = (mu - 1) * (mu - 2) / (N - 1)
    assert abs(runs - mu) <= K * math.sqrt(var), (runs, mu)


def test_chunk_boundaries_invisible():
    n = 64 * cpu.CHUNK
    whole = cpu.mask_cpu(n, 0.5, 31)
    # the same bits computed in pieces that start at arbitrary (odd) offsets
    cuts = [0, 1, 777, cpu.CHUNK - 1, cpu.CHUNK + 2, 5 * cpu.CHUNK + 3, n]
    pieces = [cpu.mask_cpu(b - a, 0.5, 31, offset=a) for a, b in zip(cuts, cuts[1:])]
    np.testing.assert_array_equal(np.concatenate(pieces), whole)
    # the elements next to chunk edges are as random as the rest: drop rate and agreement
    # between the two sides of each edge
    edges = np.arange(cpu.CHUNK, n, cpu.CHUNK)
    near = np.concatenate([whole[edges + d] for d in range(-4, 4)])
    assert abs(near.mean() - 0.5) <= K * math.sqrt(0.25 / near.size)
    agree = (whole[edges - 1] == whole[edges]).mean()
    assert abs(agree - 0.5) <= K * math.sqrt(0.25 / edges.size)


# ----------------------------------------------------------------------------------------------
# thread-count invariance
# ----------------------------------------------------------------------------------------------


def test_numba_thread_count_invariance():
    import numba

    x = np.random.default_rng(2).standard_normal(5 * cpu.CHUNK + 11).astype(np.float32)
    before = numba.get_num_threads()
    outs = []
    try:
        for threads in sorted({1, before, numba.config.NUMBA_NUM_THREADS}):
            numba.set_num_threads(threads)
            outs.append(
                (
                    cpu.dropout_cpu(x, 0.4, 1 / 0.6, 9, offset=1),
                    cpu.mask_cpu(x.size, 0.4, 9),
                )
            )
    finally:
        numba.set_num_threads(before)
    for out in outs[1:]:
        for a, b in zip(outs[0], out):
            np.testing.assert_array_equal(a, b)


def test_torch_thread_count_invariance():
    x = torch.randn(300_000)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = fast_dropout(x, 0.5, 2.0, 10)
    finally:
        torch.set_num_threads(before)
    assert torch.equal(one, fast_dropout(x, 0.5, 2.0, 10))


# ----------------------------------------------------------------------------------------------
# autograd, saved bytes, torch.library
# ----------------------------------------------------------------------------------------------


def test_gradcheck_float64():
    x = torch.randn(4, 7, dtype=torch.float64, requires_grad=True)

    def f(t):
        return fast_dropout(t, 0.3, 1 / 0.7, 2**64 - 9)

    assert torch.autograd.gradcheck(f, (x,))
    assert torch.autograd.gradgradcheck(f, (x,))


def test_gradient_is_mask_times_scale():
    x = torch.randn(3000, requires_grad=True)
    fast_dropout(x, 0.6, 2.5, 42).sum().backward()
    assert torch.equal(x.grad, dropout_mask(x.shape, 0.6, seed=42).float() * 2.5)


def _saved_bytes(op, x) -> int:
    total = 0

    def pack(t):
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        op(x)
    return total


def test_saved_tensor_bytes():
    n = 1 << 16
    x = torch.randn(n, requires_grad=True)
    assert _saved_bytes(lambda t: F.dropout(t, 0.5, True), x) >= n  # torch keeps a full mask
    assert _saved_bytes(lambda t: fast_dropout(t, 0.5, 2.0, 1), x) == 0


def test_traced_route_same_bits_as_kernel_forward_and_backward():
    # compiled code (and every torch.func transform) takes the PyTorch-op route with a tensor
    # seed, eager code the kernel with an int: the same bits, forward, backward, in place
    x = torch.randn(64, 33, requires_grad=True)
    f = torch.compile(
        lambda t, s: fast_dropout(t, 0.1, 1 / 0.9, s) * 2, backend="aot_eager", fullgraph=True
    )
    fi = torch.compile(
        lambda t, s: fast_dropout(t * 1, 0.1, 1 / 0.9, s, inplace=True) * 2,
        backend="aot_eager",
        fullgraph=True,
    )
    for seed in (5, 6, 2**64 - 1):
        eager = fast_dropout(x, 0.1, 1 / 0.9, seed) * 2
        (g_eager,) = torch.autograd.grad(eager.sum(), x)
        assert torch.equal(g_eager, dropout_mask(x.shape, 0.1, seed=seed).float() * (2 / 0.9))
        seed_t = torch.tensor(seed - (1 << 64) if seed >= 1 << 63 else seed)
        for fn in (f, fi):
            y = fn(x, seed_t)
            assert torch.equal(y, eager)
            (g,) = torch.autograd.grad(y.sum(), x)
            assert torch.equal(g, g_eager)


@pytest.mark.slow
def test_torch_compile_parity_inductor():
    x = torch.randn(64, 33, requires_grad=True)
    f = torch.compile(lambda t: fast_dropout(t, 0.5, 2.0, 123) + 1, fullgraph=True)
    y = f(x)
    assert torch.equal(y, fast_dropout(x, 0.5, 2.0, 123) + 1)
    (g,) = torch.autograd.grad(y.sum(), x)
    assert torch.equal(g, dropout_mask(x.shape, 0.5, seed=123).float() * 2.0)


# ----------------------------------------------------------------------------------------------
# availability
# ----------------------------------------------------------------------------------------------


def test_fast_available_reasons():
    assert fast_available(torch.randn(3)) == (True, "")
    ok, why = fast_available(torch.ones(3, dtype=torch.int32))
    assert not ok and "torch.int32" in why
    ok, why = fast_available(torch.empty(3, device="meta"))
    assert not ok and "CPU" in why
    ok, why = fast_available(torch.randn(AUTO_MIN_NUMEL - 1), auto=True)
    assert not ok and str(AUTO_MIN_NUMEL) in why
    assert fast_available(torch.randn(AUTO_MIN_NUMEL), auto=True)[0]
    with pytest.raises(ValueError, match="torch.int64"):
        fast_dropout(torch.ones(3, dtype=torch.int64), 0.5, 2.0, 1)


def test_import_droplab_does_not_import_numba():
    code = (
        "import sys, droplab, droplab.functional, droplab.kernels.fast; "
        "print('numba' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ----------------------------------------------------------------------------------------------
# eager path: no torch._dynamo, in place
# ----------------------------------------------------------------------------------------------


def test_eager_calls_do_not_import_dynamo():
    # the first call of a torch.library custom op imports torch._dynamo (seconds); the eager
    # path must never pay it: not at import, not forward, not backward, not in place
    code = (
        "import sys, torch, droplab\n"
        "droplab.dropout(torch.ones(10**6), 0.5)\n"
        "x = torch.ones(10**5, requires_grad=True)\n"
        "droplab.dropout(x, 0.5, backend='fast').sum().backward()\n"
        "droplab.dropout(x * 1, 0.5, backend='fast', inplace=True).sum().backward()\n"
        "import droplab.kernels.cpu\n"
        "print('numba' in sys.modules, 'torch._dynamo' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True False", out.stderr


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
@pytest.mark.parametrize("contiguous", [True, False])
def test_inplace_same_bits_as_out_of_place(dtype, contiguous):
    base = torch.randn(70, 3 * cpu.CHUNK // 64 + 5).to(dtype)
    x = base if contiguous else base.t()
    want = fast_dropout(x, 0.3, 1 / 0.7, 2**64 - 5)
    storage = x.untyped_storage().data_ptr()
    version = x._version
    y = fast_dropout(x, 0.3, 1 / 0.7, 2**64 - 5, inplace=True)
    assert y is x and x.untyped_storage().data_ptr() == storage
    assert torch.equal(x, want) and x._version > version


def test_inplace_gradient_and_version_contract():
    w = torch.randn(5000, requires_grad=True)
    h = w * 3
    y = fast_dropout(h, 0.4, 1 / 0.6, 11, inplace=True)
    assert y is h
    g = torch.randn(5000)
    y.backward(g)
    m = dropout_mask(w.shape, 0.4, seed=11).float()
    assert torch.equal(w.grad, g * m * (1 / 0.6) * 3)
    # as for torch's in-place ops: a leaf that requires grad is refused, and overwriting a
    # tensor another op saved for backward is detected at backward time
    with pytest.raises(RuntimeError, match="in-place"):
        fast_dropout(torch.randn(3, requires_grad=True), 0.5, 2.0, 1, inplace=True)
    a = torch.randn(100, requires_grad=True)
    b = a.sigmoid()  # saves its output
    fast_dropout(b, 0.5, 2.0, 1, inplace=True)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        b.sum().backward()


def test_inplace_gradcheck_float64():
    x = torch.randn(6, 5, dtype=torch.float64, requires_grad=True)

    def f(t):
        return fast_dropout(t * 1, 0.3, 1 / 0.7, 77, inplace=True)

    assert torch.autograd.gradcheck(f, (x,))
    assert torch.autograd.gradgradcheck(f, (x,))


def test_droplab_dropout_inplace_auto_uses_the_kernel():
    import droplab

    x = torch.randn(4 * AUTO_MIN_NUMEL)
    want = droplab.dropout(x, 0.2, seed=3, backend="torch")
    storage = x.data_ptr()
    y = droplab.dropout(x, 0.2, seed=3, inplace=True)  # backend="auto"
    assert y is x and x.data_ptr() == storage and torch.equal(x, want)
    xt = torch.randn(40, 4 * AUTO_MIN_NUMEL // 40 + 1).t()  # non-contiguous: through a temporary
    want = droplab.dropout(xt, 0.2, seed=4, backend="torch")
    assert droplab.dropout(xt, 0.2, seed=4, inplace=True) is xt and torch.equal(xt, want)


def test_no_grad_and_inference_mode_paths():
    x = torch.randn(3000, requires_grad=True)
    want = fast_dropout(x, 0.5, 2.0, 9)
    with torch.no_grad():
        assert torch.equal(fast_dropout(x, 0.5, 2.0, 9), want)
    with torch.inference_mode():
        xi = x.detach().clone()
        assert torch.equal(fast_dropout(xi, 0.5, 2.0, 9, inplace=True), want)


def test_first_kernel_call_keeps_torch_thread_count_and_numba_follows_it():
    # numba's OpenMP layer resets the process's OpenMP thread count when it starts
    code = (
        "import json, torch; torch.set_num_threads(1)\n"
        "import droplab, numba\n"
        "droplab.dropout(torch.ones(10**5), 0.5, backend='fast')\n"
        "a = [torch.get_num_threads(), numba.get_num_threads()]\n"
        "torch.set_num_threads(2); droplab.dropout(torch.ones(10**5), 0.5, backend='fast')\n"
        "b = [torch.get_num_threads(), numba.get_num_threads()]\n"
        "print(json.dumps([a, b, min(2, numba.config.NUMBA_NUM_THREADS)]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    first, second, numba_max = json.loads(out.stdout)
    assert first == [1, 1]
    assert second == [2, numba_max]
