"""droplab.kernels.pool: large fast-kernel outputs reuse the memory of freed ones."""

from __future__ import annotations

import gc

import pytest
import torch

from droplab.kernels import pool


@pytest.fixture(autouse=True)
def empty_pool():
    pool.release()
    yield
    pool.release()


def big(dtype=torch.float32) -> torch.Tensor:
    n = pool.MIN_BYTES // torch.tensor([], dtype=dtype).element_size()
    return torch.ones(2, n // 2, dtype=dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
def test_output_is_an_ordinary_contiguous_tensor(dtype):
    x = big(dtype)
    y = pool.empty_like(x)
    assert y.shape == x.shape and y.dtype == dtype and y.is_contiguous()
    y.fill_(3)
    assert bool((y == 3).all())


def test_freed_buffer_is_reused_and_live_ones_never_shared():
    x = big()
    a = pool.empty_like(x)
    b = pool.empty_like(x)
    assert a.data_ptr() != b.data_ptr()
    ptr = a.data_ptr()
    view = a[0]  # a view keeps the buffer alive
    del a
    gc.collect()
    assert pool.idle_bytes() == 0
    c = pool.empty_like(x)
    assert c.data_ptr() not in (ptr, b.data_ptr())
    del view
    gc.collect()
    assert pool.idle_bytes() == x.numel() * 4
    d = pool.empty_like(x)
    assert d.data_ptr() == ptr and pool.idle_bytes() == 0


def test_small_outputs_bypass_the_pool_and_the_cap_holds(monkeypatch):
    small = torch.ones(10)
    t = pool.empty_like(small)
    del t
    gc.collect()
    assert pool.idle_bytes() == 0
    monkeypatch.setattr(pool, "MAX_POOLED_BYTES", pool.MIN_BYTES)
    x = big()
    a, b = pool.empty_like(x), pool.empty_like(x)
    del a, b
    gc.collect()
    assert pool.idle_bytes() == pool.MIN_BYTES


def test_fast_dropout_of_a_large_tensor_is_still_exact():
    pytest.importorskip("numba")
    import droplab

    x = torch.randn(3, pool.MIN_BYTES // 4)
    ref = droplab.dropout(x, 0.3, seed=5, backend="torch")
    for _ in range(3):  # the second and third outputs come from the pool
        y = droplab.dropout(x, 0.3, seed=5, backend="fast")
        assert torch.equal(y, ref)
        del y
        gc.collect()
