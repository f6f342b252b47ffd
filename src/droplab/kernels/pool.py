"""A small caching allocator for the fast kernels' large outputs.

A fresh multi-megabyte tensor comes from ``mmap``: its first write page-faults on every 4 KiB
page, which costs more than the dropout kernel itself (measured: a 16M-element float32 dropout
runs at ~0.8 G elements/s into fresh memory and ~2.5 G/s into memory already touched). Like
PyTorch's CUDA caching allocator, this pool keeps the buffers of freed outputs and hands them out
again: an output is a ``torch.from_numpy`` view of a pooled buffer, and when the last tensor using
it is freed (NumPy drops the view, ``weakref.finalize`` fires) the buffer goes back to the pool.

Only outputs of at least ``MIN_BYTES`` are pooled, at most ``MAX_POOLED_BYTES`` are kept idle
(least recently freed dropped first), and ``release()`` empties the pool. A pooled tensor is an
ordinary contiguous tensor except that its storage cannot be resized (``resize_`` to a larger
size raises, as for any tensor made by ``torch.from_numpy``).
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict

import numpy as np
import torch

MIN_BYTES = 1 << 22  # 4 MiB: below this, the allocator's own caches already serve warm memory
MAX_POOLED_BYTES = 1 << 30  # idle memory kept for reuse, at most

_lock = threading.Lock()
_idle: OrderedDict[int, list[np.ndarray]] = OrderedDict()  # nbytes -> idle buffers
_idle_bytes = 0


def empty_like(x: torch.Tensor) -> torch.Tensor:
    """A contiguous tensor shaped like ``x`` (CPU), from the pool when it is large."""
    nbytes = x.numel() * x.element_size()
    if nbytes < MIN_BYTES or x.device.type != "cpu":
        return torch.empty_like(x, memory_format=torch.contiguous_format)
    return empty(x.numel(), x.dtype).view(x.shape)


def empty(numel: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A flat CPU tensor of ``numel`` elements from the pool, whatever its size (for scratch
    buffers that a caller needs again call after call, as ``mc_predict``'s row blocks)."""
    buf = _take(numel * dtype.itemsize)
    view = buf[:]  # a new ndarray object over the buffer: its death returns the buffer
    weakref.finalize(view, _give_back, buf)
    return torch.from_numpy(view).view(dtype)


def idle_bytes() -> int:
    """Bytes held idle in the pool."""
    return _idle_bytes


def release() -> None:
    """Drop every idle buffer (their memory returns to the system)."""
    global _idle_bytes
    with _lock:
        _idle.clear()
        _idle_bytes = 0


def _take(nbytes: int) -> np.ndarray:
    global _idle_bytes
    with _lock:
        stack = _idle.get(nbytes)
        if stack:
            _idle_bytes -= nbytes
            buf = stack.pop()
            if not stack:
                del _idle[nbytes]
            return buf
    return np.empty(nbytes, dtype=np.uint8)


def _give_back(buf: np.ndarray) -> None:
    global _idle_bytes
    nbytes = buf.nbytes
    if nbytes > MAX_POOLED_BYTES:
        return
    with _lock:
        _idle.setdefault(nbytes, []).append(buf)
        _idle.move_to_end(nbytes)
        _idle_bytes += nbytes
        while _idle_bytes > MAX_POOLED_BYTES:
            size, stack = next(iter(_idle.items()))
            stack.pop()
            _idle_bytes -= size
            if not stack:
                del _idle[size]
