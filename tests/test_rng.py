"""The reference counter-based mask (droplab.kernels.rng) and its NumPy twin (droplab.scratch)."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch

import droplab
from droplab.kernels import rng
from droplab.scratch import mask as np_mask

SEEDS = [0, 1, 12345, 2**32 - 1, 2**63 - 1, 2**63, 2**64 - 1]


def words_by_definition(numel: int, seed: int, offset: int = 0) -> list[int]:
    """The 32-bit words of the module docstring, one Python int at a time."""
    key = rng.mix64_int(seed + rng.GOLDEN)
    out = []
    for i in range(offset, offset + numel):
        w = rng.mix64_int(key + (i // 2 + 1) * rng.GOLDEN)
        out.append((w >> (32 * (i % 2))) & rng.MASK32)
    return out


# ----------------------------------------------------------------------------------------------
# the generator against its definition
# ----------------------------------------------------------------------------------------------


def test_mix64_matches_splitmix64_reference_outputs():
    # SplitMix64 seeded with 1234567 (splitmix64.c; Rosetta Code "Pseudo-random numbers/Splitmix64")
    expected = [
        6457827717110365317,
        3203168211198807973,
        9817491932198370423,
        4593380528125082431,
        16408922859458223821,
    ]
    states = [(1234567 + k * rng.GOLDEN) & rng.MASK64 for k in range(1, 6)]
    assert [rng.mix64_int(s) for s in states] == expected
    got = rng._mix64(torch.tensor([rng._signed(s) for s in states], dtype=torch.int64))
    assert [v & rng.MASK64 for v in got.tolist()] == expected


def test_vectorized_mix64_matches_scalar_on_high_bit_inputs():
    g = torch.Generator().manual_seed(0)
    z = torch.randint(-(2**63), 2**63 - 1, (4096,), dtype=torch.int64, generator=g)
    got = [v & rng.MASK64 for v in rng._mix64(z).tolist()]
    assert got == [rng.mix64_int(v & rng.MASK64) for v in z.tolist()]


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("offset", [0, 1, 6, 7])
def test_random_words_match_scalar_definition(seed, offset):
    got = rng.random_words(37, seed, offset=offset).tolist()
    assert got == words_by_definition(37, seed, offset)
    assert all(0 <= u <= rng.MASK32 for u in got)


@pytest.mark.parametrize("offset", [0, 1, 2, 9, 1000])
@pytest.mark.parametrize("numel", [1, 2, 5, 64])
def test_offset_windows_are_slices_of_one_stream(offset, numel):
    full = rng.random_words(offset + numel, 7)
    assert torch.equal(rng.random_words(numel, 7, offset=offset), full[offset:])


def test_dropout_mask_is_words_against_threshold_in_row_major_order():
    p = 0.3
    mask = rng.dropout_mask((3, 5, 7), p, seed=11)
    u = torch.tensor(words_by_definition(105, 11)).reshape(3, 5, 7)
    assert torch.equal(mask, u >= rng.keep_threshold(p))
    assert mask.dtype == torch.bool


# ----------------------------------------------------------------------------------------------
# keep probability
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("p", [0.0, 1e-12, 0.1, 1 / 3, 0.5, 0.9, 1 - 1e-12, 1.0])
def test_keep_probability_of_threshold_is_one_minus_p(p):
    t = rng.keep_threshold(p)
    assert 0 <= t <= 2**32
    assert abs((1 - t / 2**32) - (1 - p)) <= 2**-33 < 1e-9


def test_p0_keeps_all_and_p1_keeps_none():
    assert rng.dropout_mask((1000,), 0.0, seed=3).all()
    assert not rng.dropout_mask((1000,), 1.0, seed=3).any()


@pytest.mark.parametrize("p", [0.05, 0.2, 0.5, 0.8, 0.95])
def test_keep_rate_within_binomial_bound(p):
    n = 200_000
    rate = rng.dropout_mask((n,), p, seed=2024).double().mean().item()
    assert abs(rate - (1 - p)) <= 5 * math.sqrt(p * (1 - p) / n)


def test_low_and_high_halves_are_both_uniform():
    # each 64-bit word feeds two elements: neither half may be biased
    u = rng.random_words(200_000, 5).double() / 2**32
    for half in (u[0::2], u[1::2]):
        n = half.numel()
        assert abs(half.mean().item() - 0.5) <= 5 * math.sqrt(1 / 12 / n)
        assert abs((half < 0.25).double().mean().item() - 0.25) <= 5 * math.sqrt(0.1875 / n)
    # neighbours (same word) uncorrelated
    c = np.corrcoef(u[0::2].numpy(), u[1::2].numpy())[0, 1]
    assert abs(c) <= 5 / math.sqrt(100_000)


# ----------------------------------------------------------------------------------------------
# torch == NumPy twin, determinism
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(), (0,), (1,), (7,), (3, 5, 7), (2, 0, 3), (64, 33)])
@pytest.mark.parametrize("p", [0.0, 0.25, 0.5, 0.999, 1.0])
@pytest.mark.parametrize("seed", [0, 99, 2**64 - 1])
def test_torch_and_numpy_masks_are_bit_identical(shape, p, seed):
    t = rng.dropout_mask(shape, p, seed=seed)
    n = np_mask.dropout_mask(shape, p, seed=seed)
    assert n.dtype == np.bool_ and n.shape == tuple(t.shape)
    np.testing.assert_array_equal(t.numpy(), n)


@pytest.mark.parametrize("offset", [0, 3, 10])
def test_torch_and_numpy_words_are_identical(offset):
    t = rng.random_words(101, 42, offset=offset)
    n = np_mask.random_words(101, 42, offset=offset)
    np.testing.assert_array_equal(t.numpy().astype(np.uint64), n)


def test_int_shape_is_a_1d_shape_on_both_engines():
    t = rng.dropout_mask(10, 0.5, seed=1)
    assert t.shape == (10,)
    np.testing.assert_array_equal(t.numpy(), np_mask.dropout_mask(10, 0.5, seed=1))


def test_masks_repeat_and_differ_between_seeds():
    a = rng.dropout_mask((4096,), 0.5, seed=1)
    assert torch.equal(a, rng.dropout_mask((4096,), 0.5, seed=1))
    assert not torch.equal(a, rng.dropout_mask((4096,), 0.5, seed=2))


def test_mask_does_not_depend_on_thread_count_or_global_rng():
    before = torch.get_rng_state()
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = rng.dropout_mask((100_003,), 0.4, seed=8)
        torch.set_num_threads(max(2, threads))
        many = rng.dropout_mask((100_003,), 0.4, seed=8)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one, many)
    assert torch.equal(before, torch.get_rng_state())


def test_mask_is_a_prefix_property_of_the_flat_index():
    # the mask of a shape depends only on the row-major index: reshaping keeps it
    a = rng.dropout_mask((6, 10), 0.5, seed=4)
    assert torch.equal(a.reshape(-1), rng.dropout_mask((60,), 0.5, seed=4))
    assert torch.equal(a.reshape(-1)[:20], rng.dropout_mask((20,), 0.5, seed=4))


def test_derive_seed_is_repeatable_distinct_and_in_range():
    seeds = [rng.derive_seed(s, k) for s in (0, 1, 2**64 - 1) for k in range(1000)]
    assert seeds == [rng.derive_seed(s, k) for s in (0, 1, 2**64 - 1) for k in range(1000)]
    assert len(set(seeds)) == len(seeds)
    assert all(0 <= s <= rng.MAX_SEED for s in seeds)


# ----------------------------------------------------------------------------------------------
# errors
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seed", "exc", "msg"),
    [
        (-1, ValueError, "seed must be an int in [0, 2**64 - 1], got -1"),
        (2**64, ValueError, f"seed must be an int in [0, 2**64 - 1], got {2**64}"),
        (1.0, TypeError, "seed must be an int in [0, 2**64 - 1], got float 1.0"),
        (True, TypeError, "seed must be an int in [0, 2**64 - 1], got bool True"),
        ("1", TypeError, "seed must be an int in [0, 2**64 - 1], got str '1'"),
    ],
)
@pytest.mark.parametrize("shape", [(3,), (0,)])
def test_invalid_seed_same_error_on_both_engines(seed, exc, msg, shape):
    with pytest.raises(exc, match=re.escape(msg)):
        rng.dropout_mask(shape, 0.5, seed=seed)
    with pytest.raises(exc, match=re.escape(msg)):
        np_mask.dropout_mask(shape, 0.5, seed=seed)


@pytest.mark.parametrize(
    "p, exc, shown",
    [(-0.1, ValueError, "-0.1"), (1.5, ValueError, "1.5"), (float("nan"), ValueError, "nan"),
     (True, TypeError, "bool True"), ("0.5", TypeError, "str '0.5'")],
)  # fmt: skip
def test_invalid_p_same_error_on_both_engines_and_in_dropout(p, exc, shown):
    msg = f"p must be a real number in [0, 1], got {shown}"
    with pytest.raises(exc, match=re.escape(msg)):
        rng.dropout_mask((3,), p, seed=0)
    with pytest.raises(exc, match=re.escape(msg)):
        np_mask.dropout_mask((3,), p, seed=0)
    with pytest.raises(exc, match=re.escape(msg)):
        droplab.dropout(torch.ones(3), p)


# ----------------------------------------------------------------------------------------------
# tensor seeds: how a compiled step or a vmap-ed draw carries its seed
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 12345, 2**63 - 1, 2**63, 2**64 - 1])
@pytest.mark.parametrize("shape", [(), (1,), (7,), (3, 5), (2, 3, 4)])
def test_tensor_seed_mask_equals_int_seed_mask(seed, shape):
    as_tensor = torch.tensor(rng.signed64(seed))
    for p in (0.0, 0.3, 0.5, 1.0):
        want = rng.dropout_mask(shape, p, seed=seed)
        assert torch.equal(rng.dropout_mask(shape, p, seed=as_tensor), want)


@pytest.mark.parametrize("seed", [0, 7, 2**64 - 1])
def test_derive_seed_tensor_equals_derive_seed(seed):
    steps = [0, 1, 2, 1000, 2**31, 2**62]
    got = [int(rng.derive_seed_tensor(seed, torch.tensor(k))) for k in steps]
    assert got == [rng.signed64(rng.derive_seed(seed, k)) for k in steps]


@pytest.mark.parametrize(
    "bad, msg",
    [
        (torch.tensor([1, 2]), "got a tensor of shape (2,) and dtype torch.int64"),
        (torch.tensor(1.0), "got a tensor of shape () and dtype torch.float32"),
        (torch.tensor(1, dtype=torch.int32), "got a tensor of shape () and dtype torch.int32"),
    ],
)
def test_bad_tensor_seed_named(bad, msg):
    with pytest.raises(TypeError, match=re.escape(msg)):
        rng.dropout_mask((3,), 0.5, seed=bad)
    with pytest.raises(TypeError, match=re.escape(msg)):
        droplab.dropout(torch.ones(3), 0.5, seed=bad)


@pytest.mark.parametrize("backend", ["auto", "torch", "fast"])
def test_functions_take_a_tensor_seed_with_the_int_seeds_bits(backend):
    x = torch.randn(48, 64)
    for seed in (3, 2**64 - 5):
        as_tensor = torch.tensor(rng.signed64(seed))
        want = droplab.dropout(x, 0.4, seed=seed, backend=backend)
        assert torch.equal(droplab.dropout(x, 0.4, seed=as_tensor, backend=backend), want)
        assert torch.equal(
            droplab.dropout2d(x.view(4, 12, 8, 8), 0.4, seed=as_tensor),
            droplab.dropout2d(x.view(4, 12, 8, 8), 0.4, seed=seed),
        )


@pytest.mark.parametrize("make", [rng.dropout_mask, np_mask.dropout_mask], ids=["torch", "numpy"])
def test_mask_shape_is_checked_on_both_engines(make):
    with pytest.raises(
        ValueError, match=re.escape("shape must not have a negative size, got (-1,)")
    ):
        make((-1,), 0.5, seed=0)
    msg = "shape must be a non-negative int or a sequence of them, got (2.7,)"
    with pytest.raises(TypeError, match=re.escape(msg)):
        make((2.7,), 0.5, seed=0)
    with pytest.raises(TypeError, match="shape must be a non-negative int"):
        make((True, 2), 0.5, seed=0)
    assert tuple(make(3, 0.5, seed=0).shape) == (3,)
    assert tuple(make((np.int64(2), 0), 0.5, seed=0).shape) == (2, 0)


@pytest.mark.parametrize("make", [rng.dropout_mask, np_mask.dropout_mask], ids=["torch", "numpy"])
def test_mask_takes_a_0d_tensor_p_as_dropout_does(make):
    a = np.asarray(make((64,), torch.tensor(0.3), seed=5))
    assert np.array_equal(a, np.asarray(make((64,), 0.3, seed=5)))
    with pytest.raises(TypeError, match="p must be a real number in"):
        make((4,), torch.tensor([0.3, 0.4]), seed=5)
