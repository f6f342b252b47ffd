"""The blocked fast path of ``mc_predict``: an ``nn.Sequential`` of Linear layers, elementwise
activations and dropout, run by blocks of rows that stay in the cache.
"""

from __future__ import annotations

import torch
from torch import nn

from droplab.mc.summary import fill_rows

# ----------------------------------------------------------------------------------------------
# the fast path: an nn.Sequential of Linear, activations and dropout, run by blocks of rows
# ----------------------------------------------------------------------------------------------
#
# Calling the modules on a chunk of the repeated batch writes each activation of the chunk to
# fresh memory (at the default 16384 rows, 16 MiB per 256-wide layer), out of the caches; the
# matrix products of the MLP are then a minority of the time. For an nn.Sequential built only of
# nn.Linear, elementwise activations, torch.nn.Dropout and droplab.Dropout (the usual MC-dropout
# MLP), mc_predict instead draws each chunk's random numbers first, layer by layer, exactly as
# the module calls would (the same generator calls in the same order, or the same counter-based
# seeds), then runs the layers over blocks of rows that stay in the L2 cache, in two reused
# buffers, dropout applied with the same masks by offset into the chunk. The outputs are those
# of the module calls, up to the float rounding of matrix products of other shapes.

# activations per block: 2**19 float32 (2 MiB), two buffers that stay in a core's L2 cache
BLOCK_ELEMENTS = 1 << 19
# float64 uniforms drawn at a time for torch.nn.Dropout masks (512 KiB)
_UNIFORM_PIECE = 1 << 16
# elementwise, deterministic, row by row: applied to a block as the module itself
_ACTIVATIONS = (
    nn.Tanh,
    nn.Sigmoid,
    nn.GELU,
    nn.SiLU,
    nn.ELU,
    nn.LeakyReLU,
    nn.Softplus,
    nn.Mish,
    nn.Hardtanh,
    nn.ReLU6,
)


def torch_dropout_noise(
    out: torch.Tensor, keep: float, scale: torch.Tensor, piece: int = _UNIFORM_PIECE
) -> torch.Tensor:
    """Fill the flat float32 ``out`` with the noise of torch's CPU dropout, ``x * noise``:
    ``noise = torch.empty(numel).bernoulli_(keep).div_(keep)``, ``scale`` being ``1 / keep`` so
    computed (a 0-d float32 tensor).

    Where torch draws Bernoulli masks serially (``bernoulli_`` without MKL), element ``i`` is
    kept iff the ``i``-th float64 uniform of the generator is ``< keep``: drawing those uniforms
    (``uniform_``: 53 bits from two 32-bit Mersenne-twister words, as ``bernoulli_`` draws them)
    and comparing them gives the same mask, leaves the generator in the same state, and takes a
    third of the time. ``torch_dropout_reproduced`` checks all of it against ``F.dropout``
    before this is used."""
    u = torch.empty(min(piece, out.numel()), dtype=torch.float64)
    for a in range(0, out.numel(), piece):
        b = min(a + piece, out.numel())
        torch.lt(u[: b - a].uniform_(), keep, out=out[a:b]).mul_(scale)  # 1 * scale, 0 * scale
    return out


_TORCH_DROPOUT_OK: bool | None = None


def torch_dropout_reproduced() -> bool:
    """Whether ``x * noise`` from ``torch_dropout_noise`` is exactly torch's
    ``F.dropout(x, p)`` on this machine, generator state afterwards included (checked once)."""
    global _TORCH_DROPOUT_OK
    if _TORCH_DROPOUT_OK is None:
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            x = torch.randn(301, 257)
            torch.manual_seed(20160606)
            ref = torch.nn.functional.dropout(x, 0.3, True)
            ref_next = torch.rand(8)
            torch.manual_seed(20160606)
            noise = torch.empty(x.numel())
            torch_dropout_noise(noise, 1 - 0.3, torch.ones(()).div_(1 - 0.3), piece=10_000)
            ours = x * noise.view(x.shape)
            _TORCH_DROPOUT_OK = torch.equal(ref, ours) and torch.equal(ref_next, torch.rand(8))
    return _TORCH_DROPOUT_OK


def _no_hooks(m: nn.Module) -> bool:
    return not (m._forward_hooks or m._forward_pre_hooks or m._backward_hooks)


def plan(rest: nn.Module, h: torch.Tensor, chunk_rows: list[int]) -> list | None:
    """The steps of the blocked forward of ``rest`` on the repeated ``h``, or ``None`` where
    it does not apply (then the modules are called as they are)."""
    from torch.nn.modules import module as torch_module

    from droplab import functional as F
    from droplab.layers import Dropout

    if (
        type(rest) is not nn.Sequential
        or not _no_hooks(rest)
        or torch_module._global_forward_hooks
        or torch_module._global_forward_pre_hooks
        or h.device.type != "cpu"
        or h.dtype != torch.float32
        or h.dim() != 2
        or not chunk_rows
    ):
        return None
    steps, width, drops = [], h.shape[1], 0
    for m in rest:
        t = type(m)
        if not _no_hooks(m):
            return None
        if t is nn.Linear:
            w, b = m.weight, m.bias
            if m.in_features != width or w.dtype != torch.float32 or w.device.type != "cpu":
                return None
            if b is not None and (b.dtype != torch.float32 or b.device.type != "cpu"):
                return None
            steps.append(("linear", w, b))
            width = m.out_features
        elif t is nn.ReLU:
            steps.append(("relu",))
        elif t is nn.Identity:
            continue
        elif t in _ACTIVATIONS:
            steps.append(("module", m))
        elif t is nn.Dropout:
            if not (m.training and 0 < m.p < 1 and torch_dropout_reproduced()):
                return None
            steps.append(("torch_dropout", 1 - m.p, torch.ones(()).div_(1 - m.p), width))
            drops += 1
        elif t is Dropout:
            if not (m.training and 0 < m.p < 1):
                return None
            try:  # the module's own choice of backend for a chunk of this shape
                fast = [
                    F.fast_backend(h.new_empty((r, width)), m.backend, m.inplace)
                    for r in chunk_rows
                ]
            except ValueError:
                return None
            if not all(fast):
                return None
            steps.append(
                ("droplab_dropout", m, float(m.p), float(F.train_scale(m.p, m.mode)), width)
            )
            drops += 1
        else:
            return None
    return steps if drops else None


def _draw_chunk(steps: list, rows: int) -> list:
    """A chunk's random numbers, layer by layer, as the module calls would draw them: a
    torch.nn.Dropout's noise ``mask / (1 - p)`` ``(rows, width)``, a droplab Dropout's kernel
    seed."""
    from droplab.kernels import pool
    from droplab.kernels.rng import check_seed, derive_seed

    draws = []
    for step in steps:
        if step[0] == "torch_dropout":
            # warm memory from the pool: a fresh multi-MiB buffer page-faults on first touch
            noise = torch_dropout_noise(pool.empty(rows * step[3]), step[1], step[2])
            draws.append(noise.view(rows, step[3]))
        elif step[0] == "droplab_dropout":
            m = step[1]
            if m.seed is not None:  # as _DropoutModule._seeded: step k uses derive_seed(seed, k)
                seed = check_seed(derive_seed(m.seed, m.step))
                m.step += 1
            else:  # as droplab.functional.dropout's fast path: a seed from the global generator
                seed = int(torch.randint(0, 2**62, (), device="cpu"))
            draws.append(seed)
        else:
            draws.append(None)
    return draws


def run_blocks(steps, h, g, rows, n, block, transpose_last, emit) -> None:
    """Rows ``g .. g+rows`` of the repeated batch (one chunk) through ``steps``, by blocks of
    ``block`` rows; ``emit(out, g_block, transposed)`` gets each block's output (a buffer)."""
    from droplab.kernels import fast, pool

    cpu = fast._cpu() if any(s[0] == "droplab_dropout" for s in steps) else None
    widths = [h.shape[1]] + [s[1].shape[0] for s in steps if s[0] == "linear"]
    size = block * max(widths)
    draws = _draw_chunk(steps, rows)
    # the pool's warm buffers: fresh multi-MiB memory page-faults on first touch, which at small
    # N costs more than the layers themselves (they go back to the pool when this call ends)
    bufs = [pool.empty(size), pool.empty(size)]
    _blocks(steps, draws, cpu, bufs, h, g, rows, n, block, transpose_last, emit)


def _blocks(steps, draws, cpu, bufs, h, g, rows, n, block, transpose_last, emit) -> None:
    last = len(steps) - 1

    def take(slot, length, width):
        return bufs[slot][: length * width].view(length, width)

    for a in range(0, rows, block):
        length = min(block, rows - a)
        cur = fill_rows(take(0, length, h.shape[1]), h, g + a, n)
        slot = 0  # the buffer cur lives in (None: a tensor of its own)
        transposed = False
        for i, (step, draw) in enumerate(zip(steps, draws)):
            kind = step[0]
            other = 1 if slot == 0 else 0
            if kind == "linear":
                w, b = step[1], step[2]
                if i == last and transpose_last:  # logits (C, L): what the summary wants
                    out = bufs[other][: w.shape[0] * length].view(w.shape[0], length)
                    if b is None:
                        torch.mm(w, cur.t(), out=out)
                    else:
                        torch.addmm(b.unsqueeze(1), w, cur.t(), out=out)
                    transposed = True
                else:
                    out = take(other, length, w.shape[0])
                    if b is None:
                        torch.mm(cur, w.t(), out=out)
                    else:
                        torch.addmm(b, cur, w.t(), out=out)
                cur, slot = out, other
            elif kind == "relu":
                cur = cur.relu_() if slot is not None else torch.relu(cur)
            elif kind == "module":  # an in-place activation (inplace=True) returns cur itself
                out = step[1](cur)
                cur, slot = out, slot if out.data_ptr() == cur.data_ptr() else None
            elif kind == "torch_dropout":
                if slot is None:
                    cur, slot = take(other, length, cur.shape[1]).copy_(cur), other
                cur.mul_(draw[a : a + length])  # x * noise, as torch's dropout
            else:  # droplab dropout: the kernel of the module's call, at this block's offset
                width = step[4]
                out = take(other, length, width)
                cpu.dropout_cpu(
                    cur.contiguous().numpy().reshape(-1),
                    step[2],
                    step[3],
                    draw,
                    out=out.numpy().reshape(-1),
                    offset=a * width,
                )
                cur, slot = out, other
        emit(cur, g + a, transposed)
