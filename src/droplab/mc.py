"""Monte-Carlo dropout: sampling at test time, predictive uncertainty, and calibration metrics.

Keeping dropout on at test time and averaging ``T`` stochastic forward passes approximates the
predictive distribution of a Bayesian network (Gal & Ghahramani 2016, "Dropout as a Bayesian
Approximation: Representing Model Uncertainty in Deep Learning", ICML)::

    p(y | x)  ~  1/T sum_t p(y | x, W_t),          W_t: the weights with dropout mask t

Classification, with ``p_t = softmax(f_t(x))`` and ``pbar = mean_t p_t``::

    entropy     H[pbar] = -sum_c pbar_c log pbar_c                 in [0, log C]
    mutual_info H[pbar] - mean_t H[p_t]    (BALD, Houlsby et al. 2011) in [0, H[pbar]]
    variance    mean_t p_t**2 - pbar**2    (per class)

Regression, with ``y_t = f_t(x)`` and the model precision ``tau``::

    mean        mean_t y_t
    variance    1/tau + mean_t y_t**2 - mean_t(y_t)**2
    test LL     logsumexp_t(-tau/2 ||y - y_t||^2) - log T - 1/2 log(2 pi) + 1/2 log tau

What this module gets right that the usual recipes do not: only dropout-like modules sample
(BatchNorm and every other module stay in eval, unlike Keras' ``training=True``); every torch and
droplab dropout kind is found; modes are restored exactly, also after an exception; a model
whose passes come out identical (functional dropout tied to the parent's ``training``) is
reported instead of silently giving zero uncertainty; and the ``T`` passes run as one batched
forward rather than a Python loop.
"""

from __future__ import annotations

import contextlib
import math
import sys
import threading
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.modules.dropout import _DropoutNd

from droplab._checks import check_seed

TASKS = ("classify", "regress")

# ----------------------------------------------------------------------------------------------
# switching dropout on at test time
# ----------------------------------------------------------------------------------------------


def is_dropout_module(module: nn.Module) -> bool:
    """Whether ``module`` is dropout-like: torch's dropout kinds or a droplab module whose class
    sets ``stochastic = True`` (every droplab dropout variant, DropConnect, DropPath, ...)."""
    return isinstance(module, _DropoutNd) or bool(getattr(type(module), "stochastic", False))


def _deterministic_prefix(model: nn.Module) -> tuple[nn.Module | None, nn.Module]:
    """Split an ``nn.Sequential`` before its first module that may be random.

    The prefix (leading children built from PyTorch's own non-dropout modules, all deterministic
    in eval mode) gives the same output on every pass, so ``mc_predict`` runs it once on the
    ``N`` inputs instead of ``T`` times: for an MLP with dropout after its first layer that skips
    the largest matrix product. Anything else (custom modules, other containers) is kept whole.
    """
    if not isinstance(model, nn.Sequential):
        return None, model
    cut = 0
    for child in model:
        known = all(
            type(m).__module__.startswith("torch.nn.modules.") and not is_dropout_module(m)
            for m in child.modules()
        )
        if not known:
            break
        cut += 1
    if cut == 0:
        return None, model
    return model[:cut], model[cut:]


def dropout_modules(model: nn.Module) -> list[nn.Module]:
    """The dropout-like modules of ``model`` (``model`` itself included), in ``modules()`` order."""
    return [m for m in model.modules() if is_dropout_module(m)]


@contextlib.contextmanager
def mc_dropout(model: nn.Module) -> Iterator[nn.Module]:
    """Context manager: dropout layers sample, every other module stays in eval.

    On entry the whole model is put in eval mode and then only its dropout-like modules
    (``torch.nn.Dropout``/``1d``/``2d``/``3d``/``AlphaDropout``/``FeatureAlphaDropout`` and every
    droplab module with ``stochastic = True``) in training mode, so BatchNorm keeps using its
    running statistics. On exit, also after an exception, every module gets back its exact
    previous ``training`` flag, and seeded droplab modules their ``step`` counter (so a
    Monte-Carlo evaluation in the middle of a seeded training run does not shift its masks, and
    repeating it repeats its masks). Warns when the model has no dropout-like module.

    Only the ``training`` flag of the dropout modules themselves is set (not their children's).

    Examples::

        >>> import torch, droplab
        >>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.BatchNorm1d(8),
        ...                           torch.nn.Dropout(0.5), torch.nn.Linear(8, 2))
        >>> with droplab.mc_dropout(net):
        ...     [m.training for m in net]
        [False, False, True, False]
        >>> net.training
        True
    """
    saved = [(m, m.training) for m in model.modules()]
    drops = dropout_modules(model)
    # seeded droplab modules count their training forwards (mask k comes from (seed, k)):
    # put the counters back too, so an evaluation amid a seeded training run leaves its masks
    steps = [(m, m.step) for m in drops if isinstance(getattr(m, "step", None), int)]
    if not drops:
        warnings.warn(
            f"mc_dropout: {type(model).__name__} has no dropout module (torch.nn.Dropout & co or a "
            "droplab module), so its passes are deterministic; functional dropout "
            "(F.dropout(x, training=self.training)) cannot be switched on alone",
            RuntimeWarning,
            stacklevel=3,
        )
    try:
        model.eval()
        for m in drops:
            m.training = True
        yield model
    finally:
        for m, flag in saved:
            m.training = flag
        for m, step in steps:
            m.step = step


# ----------------------------------------------------------------------------------------------
# sampling
# ----------------------------------------------------------------------------------------------


@dataclass
class MCPrediction:
    """What ``mc_predict`` returns.

    ``mean``: mean softmax probabilities ``(N, C)`` (classify) or mean output ``(N, ...)``
    (regress). ``variance``: per-class variance of the probabilities, or the predictive variance
    of the output (``1/tau`` added when ``tau`` was given). ``entropy`` and ``mutual_info``:
    ``(N,)``, classification only (``None`` for regression). ``samples``: ``(T, N, ...)`` per-pass
    probabilities or outputs when asked for with ``keep_samples=True``, else ``None``.
    """

    mean: torch.Tensor
    variance: torch.Tensor
    entropy: torch.Tensor | None = None
    mutual_info: torch.Tensor | None = None
    samples: torch.Tensor | None = None
    task: str = "classify"
    T: int = 0

    @property
    def prediction(self) -> torch.Tensor:
        """The predicted class (classify) or the predictive mean (regress)."""
        return self.mean.argmax(-1) if self.task == "classify" else self.mean

    @property
    def std(self) -> torch.Tensor:
        return self.variance.sqrt()


def _entropy(p: torch.Tensor) -> torch.Tensor:
    """``-sum p log p`` over the last axis, with ``0 log 0 = 0``."""
    return -torch.special.xlogy(p, p).sum(-1)


def _model_device(model: nn.Module, fallback: torch.device) -> torch.device:
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return fallback


def _progress_bar(total: int, enabled: bool | None):
    """A rich progress bar over ``total`` chunks, or ``None``. ``enabled=None``: only for long
    runs (many chunks) on a terminal."""
    if enabled is None:
        enabled = total >= 20 and sys.stderr.isatty()
    if not enabled:
        return None
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    bar = Progress(
        TextColumn("mc_predict"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} chunks"),
        TimeRemainingColumn(),
        transient=True,
    )
    return bar


# ----------------------------------------------------------------------------------------------
# the repeated batch, and per-example sums over its passes
# ----------------------------------------------------------------------------------------------
#
# Row r of the repeated batch (pass-major) is example r % n of pass r // n. A run of rows g..g+L
# splits into at most three pieces: the end of a pass, whole passes, the start of a pass, so that
# filling the rows and summing them per example take a few tensor operations, never an index.


def _pieces(g: int, length: int, n: int) -> list[tuple[int, int, int, int]]:
    """Rows ``g .. g+length`` of the repeated batch as ``(i, j, n0, k)`` pieces of local rows
    ``i .. j``: ``k == 0``: examples ``n0 .. n0+j-i`` of one pass; ``k > 0``: ``k`` whole passes."""
    out, i = [], 0
    n0 = g % n
    if n0:
        j = min(n - n0, length)
        out.append((0, j, n0, 0))
        i = j
    k = (length - i) // n
    if k:
        out.append((i, i + k * n, 0, k))
        i += k * n
    if i < length:
        out.append((i, length, 0, 0))
    return out


def _fill_rows(dst: torch.Tensor, h: torch.Tensor, g: int, n: int) -> torch.Tensor:
    """Write rows ``g .. g+len(dst)`` of the repeated batch of ``h`` into ``dst`` (contiguous)."""
    for i, j, n0, k in _pieces(g, dst.shape[0], n):
        if k:
            dst[i:j].view(k, *h.shape).copy_(h.expand(k, *h.shape))
        else:
            dst[i:j].copy_(h[n0 : n0 + j - i])
    return dst


def _accumulate(acc: torch.Tensor, q: torch.Tensor, g: int, n: int) -> None:
    """``acc[:, e] += q[:, i]`` (in float64) for every local row ``i`` of example ``e``, axis 1
    of ``q`` holding rows ``g ..`` of the repeated batch."""
    for i, j, n0, k in _pieces(g, q.shape[1], n):
        part = q[:, i:j]
        if k:
            acc.add_(part.unflatten(1, (k, n)).sum(1, dtype=torch.float64))
        else:
            acc[:, n0 : n0 + j - i].add_(part)


class _Summary:
    """Per-example sums over the passes (float64, so that ``T`` in the thousands stays exact),
    the kept samples, and whether every pass repeats the first.

    Each chunk of outputs becomes one float32 tensor ``q`` with the rows on axis 1, summed per
    example by ``_accumulate``: classification ``[p (C rows), p**2 (C rows), H[p]]`` with the
    classes on axis 0 (a class's values contiguous: softmax over C = 10 classes is then a few
    vector operations, not a short-row kernel), regression ``[y, y**2]``.
    """

    def __init__(self, task: str, n: int, T: int, from_logits: bool, keep: bool) -> None:
        self.task, self.n, self.T, self.from_logits, self.keep = task, n, T, from_logits, keep
        self.acc = None
        self.first = None  # pass 0's q, to compare later passes with
        self.identical = T > 1
        self.kept: list[torch.Tensor] = []

    def add(self, out: torch.Tensor, g: int, *, transposed: bool = False) -> None:
        """Add the outputs of rows ``g ..``: ``(L, ...)``, or ``(C, L)`` with ``transposed``
        (classification, ``out`` is then not kept beyond this call: a reused buffer)."""
        if self.task == "classify":
            z = out.float() if transposed else out.float().movedim(-1, 0)
            q = self._classify(z)
            if self.keep:
                self.kept.append(q[: z.shape[0]].movedim(0, -1).contiguous())
        else:
            y = out.float()
            q = torch.stack([y, y * y])
            if self.keep:
                self.kept.append(y.clone())
        if self.acc is None:
            shape = (q.shape[0], self.n, *q.shape[2:])
            self.acc = torch.zeros(shape, dtype=torch.float64, device=q.device)
        if self.identical:
            self._compare(q, g)
        _accumulate(self.acc, q, g, self.n)

    def _classify(self, z: torch.Tensor) -> torch.Tensor:
        C = z.shape[0]
        q = z.new_empty((2 * C + 1, *z.shape[1:]))
        p = q[:C]
        if self.from_logits:
            # softmax and its entropy H = log s - sum_c p_c (z_c - max z), s = sum_c exp(z_c -
            # max z): one log per row instead of C. -inf logits are clamped to the most negative
            # float, so that their p = 0 contributes 0 (not 0 * -inf) as in xlogy's 0 log 0 = 0
            zs = (z - z.amax(0)).clamp_min_(torch.finfo(torch.float32).min)
            torch.exp(zs, out=p)
            s = p.sum(0)
            p.div_(s)
            torch.sub(s.log_(), (p * zs).sum(0), out=q[2 * C])
        else:
            p.copy_(z)
            torch.neg(torch.special.xlogy(p, p).sum(0), out=q[2 * C])
        torch.mul(p, p, out=q[C : 2 * C])
        return q

    def _compare(self, q: torch.Tensor, g: int) -> None:
        n = self.n
        if self.first is None:
            self.first = torch.empty((q.shape[0], n, *q.shape[2:]), dtype=q.dtype, device=q.device)
        for i, j, n0, k in _pieces(g, q.shape[1], n):
            part = q[:, i:j]
            if k:
                part = part.unflatten(1, (k, n))
                if (g + i) // n == 0:  # the first pass: keep it, compare the others with it
                    self.first.copy_(part[:, 0])
                    part = part[:, 1:]
                same = bool((part == self.first.unsqueeze(1)).all())
            elif (g + i) // n == 0:
                self.first[:, n0 : n0 + j - i].copy_(part)
                same = True
            else:
                same = torch.equal(part, self.first[:, n0 : n0 + j - i])
            if not same:
                self.identical = False
                return

    def result(self, dtype: torch.dtype, tau: float | None = None) -> MCPrediction:
        T, acc = self.T, self.acc
        kept = (
            torch.cat(self.kept).reshape(T, self.n, *self.kept[0].shape[1:]) if self.keep else None
        )
        if self.task == "classify":
            C = (acc.shape[0] - 1) // 2
            mean = acc[:C].movedim(0, -1) / T
            var = (acc[C : 2 * C].movedim(0, -1) / T - mean * mean).clamp_min(0)
            entropy = _entropy(mean)
            mi = (entropy - acc[2 * C] / T).clamp(min=0)
            mi = torch.minimum(mi, entropy)  # Jensen: 0 <= BALD <= H; clamp float round-off
            return MCPrediction(
                mean.to(dtype), var.to(dtype), entropy.to(dtype), mi.to(dtype), kept, self.task, T
            )
        mean = acc[0] / T
        var = (acc[1] / T - mean * mean).clamp_min(0)
        if tau is not None:
            var = var + 1.0 / tau
        return MCPrediction(mean.to(dtype), var.to(dtype), None, None, kept, self.task, T)


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
_BLOCK_ELEMENTS = 1 << 19
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


# block buffers of finished calls, handed to later ones: fresh multi-MiB memory page-faults on
# first touch, which at small N costs more than the layers themselves
_SPARE: list[torch.Tensor] = []
_SPARE_LOCK = threading.Lock()
_SPARE_MAX = 6  # buffers kept, each of at most 2 * _BLOCK_ELEMENTS floats


def _take_buffer(size: int) -> torch.Tensor:
    with _SPARE_LOCK:
        for i, buf in enumerate(_SPARE):
            if buf.numel() >= size:
                return _SPARE.pop(i)
    return torch.empty(size)


def _give_back_buffer(buf: torch.Tensor) -> None:
    with _SPARE_LOCK:
        if len(_SPARE) < _SPARE_MAX and buf.numel() <= 2 * _BLOCK_ELEMENTS:
            _SPARE.append(buf)


def _torch_dropout_noise(
    out: torch.Tensor, keep: float, scale: torch.Tensor, piece: int = _UNIFORM_PIECE
) -> torch.Tensor:
    """Fill the flat float32 ``out`` with the noise of torch's CPU dropout, ``x * noise``:
    ``noise = torch.empty(numel).bernoulli_(keep).div_(keep)``, ``scale`` being ``1 / keep`` so
    computed (a 0-d float32 tensor).

    Where torch draws Bernoulli masks serially (``bernoulli_`` without MKL), element ``i`` is
    kept iff the ``i``-th float64 uniform of the generator is ``< keep``: drawing those uniforms
    (``uniform_``: 53 bits from two 32-bit Mersenne-twister words, as ``bernoulli_`` draws them)
    and comparing them gives the same mask, leaves the generator in the same state, and takes a
    third of the time. ``_torch_dropout_reproduced`` checks all of it against ``F.dropout``
    before this is used."""
    u = torch.empty(min(piece, out.numel()), dtype=torch.float64)
    for a in range(0, out.numel(), piece):
        b = min(a + piece, out.numel())
        torch.lt(u[: b - a].uniform_(), keep, out=out[a:b]).mul_(scale)  # 1 * scale, 0 * scale
    return out


_TORCH_DROPOUT_OK: bool | None = None


def _torch_dropout_reproduced() -> bool:
    """Whether ``x * noise`` from ``_torch_dropout_noise`` is exactly torch's
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
            _torch_dropout_noise(noise, 1 - 0.3, torch.ones(()).div_(1 - 0.3), piece=10_000)
            ours = x * noise.view(x.shape)
            _TORCH_DROPOUT_OK = torch.equal(ref, ours) and torch.equal(ref_next, torch.rand(8))
    return _TORCH_DROPOUT_OK


def _no_hooks(m: nn.Module) -> bool:
    return not (m._forward_hooks or m._forward_pre_hooks or m._backward_hooks)


def _fast_plan(rest: nn.Module, h: torch.Tensor, chunk_rows: list[int]) -> list | None:
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
            if not (m.training and 0 < m.p < 1 and _torch_dropout_reproduced()):
                return None
            steps.append(("torch_dropout", 1 - m.p, torch.ones(()).div_(1 - m.p), width))
            drops += 1
        elif t is Dropout:
            if not (m.training and 0 < m.p < 1):
                return None
            try:  # the module's own choice of backend for a chunk of this shape
                fast = [
                    F._fast_backend(h.new_empty((r, width)), m.backend, m.inplace)
                    for r in chunk_rows
                ]
            except ValueError:
                return None
            if not all(fast):
                return None
            steps.append(
                ("droplab_dropout", m, float(m.p), float(F._train_scale(m.p, m.mode)), width)
            )
            drops += 1
        else:
            return None
    return steps if drops else None


def _draw_chunk(steps: list, rows: int, borrowed: list) -> list:
    """A chunk's random numbers, layer by layer, as the module calls would draw them: a
    torch.nn.Dropout's noise ``mask / (1 - p)`` ``(rows, width)``, a droplab Dropout's kernel
    seed."""
    from droplab.kernels import pool
    from droplab.kernels.rng import check_seed, derive_seed

    draws = []
    for step in steps:
        if step[0] == "torch_dropout":
            # warm memory (a fresh multi-MiB buffer page-faults on first touch): a spare block
            # buffer (given back by the caller, listed in borrowed), or droplab's pool
            numel = rows * step[3]
            if numel <= 2 * _BLOCK_ELEMENTS:
                borrowed.append(_take_buffer(numel))
                buf = borrowed[-1][:numel]
            else:
                buf = pool.empty_like(torch.empty(()).expand(numel))
            noise = _torch_dropout_noise(buf, step[1], step[2])
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


def _run_blocks(steps, h, g, rows, n, block, transpose_last, emit) -> None:
    """Rows ``g .. g+rows`` of the repeated batch (one chunk) through ``steps``, by blocks of
    ``block`` rows; ``emit(out, g_block, transposed)`` gets each block's output (a buffer)."""
    from droplab.kernels import fast

    cpu = fast._cpu() if any(s[0] == "droplab_dropout" for s in steps) else None
    widths = [h.shape[1]] + [s[1].shape[0] for s in steps if s[0] == "linear"]
    size = block * max(widths)
    borrowed: list[torch.Tensor] = []
    try:
        draws = _draw_chunk(steps, rows, borrowed)
        bufs = [_take_buffer(size), _take_buffer(size)]
        borrowed += bufs
        _blocks(steps, draws, cpu, bufs, h, g, rows, n, block, transpose_last, emit)
    finally:
        for buf in borrowed:
            _give_back_buffer(buf)


def _blocks(steps, draws, cpu, bufs, h, g, rows, n, block, transpose_last, emit) -> None:
    last = len(steps) - 1

    def take(slot, length, width):
        return bufs[slot][: length * width].view(length, width)

    for a in range(0, rows, block):
        length = min(block, rows - a)
        cur = _fill_rows(take(0, length, h.shape[1]), h, g + a, n)
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


def mc_predict(
    model: nn.Module,
    x: torch.Tensor,
    samples: int = 50,
    *,
    seed: int | None = None,
    batch_size: int | None = None,
    task: str = "classify",
    tau: float | None = None,
    from_logits: bool = True,
    keep_samples: bool = False,
    progress: bool | None = None,
    output=None,
) -> MCPrediction:
    """Monte-Carlo dropout prediction: ``samples`` stochastic passes, summarized.

    The ``T = samples`` passes are vectorized: the batch is repeated ``T`` times along the first
    axis and sent through the model in chunks of at most ``batch_size`` rows of the repeated
    batch (default: ``max(N, 16384)``, at least one whole pass per forward), never as a Python
    loop over ``T``. Rows of the repeated batch are ordered pass-major (pass 0's ``N`` rows, then
    pass 1's, ...), so the random numbers are drawn in the order a loop ``for t in range(T):
    model(x)`` would draw them: for a model with one dropout layer whose mask is drawn
    element by element from torch's generator (``torch.rand``, and ``F.dropout`` on CPUs where
    torch does not use MKL's parallel Bernoulli), vectorized and looped give the same numbers;
    with several dropout layers the two draw the same distribution in another order. Every
    row's mask is independent, as in a loop. droplab modules built with their own ``seed`` draw
    from it (their step counter is restored afterwards), not from ``seed``. For an
    ``nn.Sequential``, the leading PyTorch modules before the first dropout (deterministic in
    eval) run once on the ``N`` inputs, and only the rest is repeated ``T`` times. When that
    rest is an ``nn.Sequential`` of ``nn.Linear``, elementwise activations, ``torch.nn.Dropout``
    and ``droplab.Dropout`` on a float32 CPU batch (the usual MC-dropout MLP), each chunk's
    masks are drawn first, layer by layer, exactly as the module calls would draw them (the
    same generator calls in the same order, the same droplab seeds and step counters), and the
    layers then run over blocks of rows that stay in the CPU cache, with the same masks: the
    same outputs up to the float rounding of matrix products of other shapes, several times
    faster. torch's dropout masks are drawn there as the float64 uniforms ``< 1 - p`` that
    ``bernoulli_`` compares, which is checked once against ``F.dropout`` (on CPUs where torch
    draws Bernoulli masks through MKL it differs, and the modules are called instead). Models
    with hooks, other modules or another device go through the modules themselves. Per-pass
    probabilities are summarized in float32 and summed per example in float64.

    Args:
        model: the network; run under ``mc_dropout`` (dropout samples, the rest in eval) and
            ``torch.no_grad``. Its modes are restored afterwards.
        x: a batch ``(N, ...)``; moved to the model's device.
        samples: ``T``, the number of passes. Default: 50
        seed: when given, the passes draw from ``torch.manual_seed(seed)`` inside
            ``torch.random.fork_rng`` (the caller's global RNG is left untouched), so the result
            is repeatable. Default: ``None`` (the global RNG)
        batch_size: the most rows of the repeated batch in one forward (bounds memory).
        task: ``"classify"`` (the model returns logits, or probabilities with
            ``from_logits=False``) or ``"regress"``.
        tau: regression only: the model precision; ``1/tau`` is added to the variance.
        keep_samples: also return the per-pass probabilities/outputs ``(T, N, ...)``.
        progress: a progress bar (``None``: for long runs on a terminal).
        output: which part of the model's output to summarize, for models that do not return
            a tensor: a key (``"logits"``) of a dict or Hugging Face ``ModelOutput``, an index of
            a tuple, or a function of the output. Default: ``None`` = the tensor itself, the
            ``logits`` of a ``ModelOutput``/dict that has them (else its first value), the
            first element of a tuple.

    Returns:
        ``MCPrediction`` with ``mean``, ``variance``, and for classification ``entropy`` and
        ``mutual_info`` (BALD). Warns when the passes are all identical (no dropout was active).

    Examples::

        >>> import torch, droplab
        >>> net = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(),
        ...                           torch.nn.Dropout(0.5), torch.nn.Linear(16, 3))
        >>> out = droplab.mc_predict(net, torch.randn(5, 4), samples=20, seed=0)
        >>> out.mean.shape, out.entropy.shape, bool((out.mutual_info <= out.entropy + 1e-6).all())
        (torch.Size([5, 3]), torch.Size([5]), True)
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {', '.join(map(repr, TASKS))}, got {task!r}")
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise ValueError(f"samples must be an integer >= 1, got {samples!r}")
    if batch_size is not None and (isinstance(batch_size, bool) or int(batch_size) < 1):
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    if tau is not None and not (tau > 0):
        raise ValueError(f"tau must be a positive number, got {tau!r}")
    if tau is not None and task != "regress":
        raise ValueError("tau is for task='regress' (it adds the noise variance 1/tau)")
    if not isinstance(x, torch.Tensor) or x.dim() == 0:
        raise TypeError("x must be a tensor with a batch dimension (N, ...)")
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if seed is not None:
        seed = check_seed(seed)
    pick = _output_picker(output)

    device = _model_device(model, x.device)
    x = x.to(device)
    n, T = x.shape[0], samples
    rows = n * T
    chunk = int(batch_size) if batch_size is not None else max(n, 16384)
    starts = range(0, rows, chunk)

    fork = contextlib.nullcontext()
    if seed is not None:
        devices = [device] if device.type == "cuda" else []
        fork = torch.random.fork_rng(devices=devices)

    summary = _Summary(task, n, T, from_logits, keep_samples)
    bar = _progress_bar(len(starts), progress)
    with fork, mc_dropout(model), torch.no_grad(), bar or contextlib.nullcontext():
        if seed is not None:
            torch.manual_seed(seed)
        job = bar.add_task("mc", total=len(starts)) if bar else None
        prefix, rest = _deterministic_prefix(model)
        h = prefix(x) if prefix is not None else x  # the same on every pass: computed once
        sizes = sorted({min(chunk, rows - s) for s in starts})
        steps = _fast_plan(rest, h, sizes) if n > 0 else None
        if steps is not None:
            width = max([h.shape[1]] + [s[1].shape[0] for s in steps if s[0] == "linear"])
            block = max(1, _BLOCK_ELEMENTS // width)
            last_linear = steps[-1][0] == "linear"

            def emit(out, g, transposed):
                summary.add(out, g, transposed=transposed)

        for s in starts:
            e = min(s + chunk, rows)
            if steps is not None:
                _run_blocks(steps, h, s, e - s, n, block, task == "classify" and last_linear, emit)
            else:
                rep = _fill_rows(h.new_empty((e - s, *h.shape[1:])), h, s, n)  # pass-major rows
                summary.add(pick(rest(rep)), s)
            if bar:
                bar.advance(job)

    dtype = torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype
    dtype = dtype if dtype.is_floating_point else torch.float32
    result = summary.result(dtype, tau)
    identical = summary.identical

    if identical and n > 0:
        warnings.warn(
            f"mc_predict: all {T} passes gave identical outputs: no dropout was active. "
            "Functional dropout written as F.dropout(x, p, training=self.training) follows the "
            "parent module (in eval here); use a dropout module (torch.nn.Dropout or droplab's) "
            "so that mc_dropout can switch it on",
            RuntimeWarning,
            stacklevel=2,
        )
    return result


def _output_picker(output):
    """The function that takes the summarized tensor out of a model's output (``output``)."""
    if callable(output):
        return output
    if output is not None and not isinstance(output, (str, int)):
        raise TypeError(
            f"output must be None, a key, an index or a function, got {type(output).__name__}"
        )

    def pick(out):
        if isinstance(out, torch.Tensor):
            return out
        if output is not None:
            try:
                got = out[output]
            except (KeyError, IndexError, TypeError):
                raise ValueError(
                    f"output={output!r}: the model returned a {type(out).__name__} without it"
                ) from None
        elif isinstance(out, Mapping):  # dicts and Hugging Face ModelOutput (an OrderedDict)
            got = out["logits"] if "logits" in out else next(iter(out.values()), None)
        elif isinstance(out, (tuple, list)) and out:
            got = out[0]
        else:
            got = out
        if not isinstance(got, torch.Tensor):
            raise TypeError(
                f"the model returned a {type(out).__name__}; pass output= (a key, an index or "
                "a function) to pick the tensor to summarize"
            )
        return got

    return pick


# ----------------------------------------------------------------------------------------------
# metrics
# ----------------------------------------------------------------------------------------------


def _as_tensor(a, dtype=torch.float64) -> torch.Tensor:
    if isinstance(a, torch.Tensor):
        return a.detach().to("cpu", dtype)
    return torch.as_tensor(a, dtype=dtype)


def _check_probs(probs, labels) -> tuple[torch.Tensor, torch.Tensor]:
    probs = _as_tensor(probs)
    labels = _as_tensor(labels, torch.int64)
    if probs.dim() != 2 or labels.dim() != 1 or probs.shape[0] != labels.shape[0]:
        raise ValueError(
            f"expected probs (N, C) and labels (N,), got {tuple(probs.shape)} and "
            f"{tuple(labels.shape)}"
        )
    if probs.shape[0] == 0:
        raise ValueError("no examples (N = 0)")
    if not torch.isfinite(probs).all() or probs.min() < 0 or probs.max() > 1:
        raise ValueError(
            f"probs must be probabilities in [0, 1] (got values in [{float(probs.min()):.4g}, "
            f"{float(probs.max()):.4g}]); pass softmax(logits), not logits"
        )
    sums = probs.sum(1)
    worst = float((sums - 1).abs().max())
    if worst > 1e-3:
        raise ValueError(
            f"each row of probs must sum to 1, a row sums to {float(sums[(sums - 1).abs().argmax()]):.6g}"
        )
    if labels.min() < 0 or labels.max() >= probs.shape[1]:
        raise ValueError(
            f"labels must be in [0, {probs.shape[1] - 1}] for {probs.shape[1]} classes, got "
            f"values in [{int(labels.min())}, {int(labels.max())}]"
        )
    return probs, labels


def accuracy(probs, labels) -> float:
    """The fraction of examples whose most probable class is the label."""
    probs, labels = _check_probs(probs, labels)
    return float((probs.argmax(1) == labels).double().mean())


def nll(probs, labels, *, eps: float = 1e-12) -> float:
    """Negative log-likelihood ``-mean_n log p[n, y_n]`` (probabilities clamped at ``eps``)."""
    probs, labels = _check_probs(probs, labels)
    p = probs.gather(1, labels[:, None]).squeeze(1)
    return float(-p.clamp_min(eps).log().mean())


def brier(probs, labels) -> float:
    """Brier score ``mean_n sum_c (p[n, c] - 1[c = y_n])**2``, in ``[0, 2]``."""
    probs, labels = _check_probs(probs, labels)
    onehot = torch.nn.functional.one_hot(labels, probs.shape[1]).double()
    return float(((probs - onehot) ** 2).sum(1).mean())


def reliability(probs, labels, n_bins: int = 15) -> dict:
    """Reliability-diagram data: equal-width confidence bins on ``[0, 1]``.

    Confidence is the top probability; bin ``b`` holds confidences in ``(b/B, (b+1)/B]`` (the
    first bin also holds 0). Returns ``edges`` (B+1), and per bin ``count``, ``accuracy`` and
    ``confidence`` (mean; ``nan`` for empty bins), as lists.
    """
    probs, labels = _check_probs(probs, labels)
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    conf, pred = probs.max(1)
    correct = (pred == labels).double()
    b = (torch.ceil(conf * n_bins).long() - 1).clamp(0, n_bins - 1)
    count = torch.bincount(b, minlength=n_bins).double()
    acc_sum = torch.bincount(b, weights=correct, minlength=n_bins)
    conf_sum = torch.bincount(b, weights=conf, minlength=n_bins)
    with torch.no_grad():
        acc = torch.where(count > 0, acc_sum / count.clamp_min(1), torch.nan)
        cmean = torch.where(count > 0, conf_sum / count.clamp_min(1), torch.nan)
    return {
        "edges": torch.linspace(0, 1, n_bins + 1, dtype=torch.float64).tolist(),
        "count": count.long().tolist(),
        "accuracy": acc.tolist(),
        "confidence": cmean.tolist(),
    }


def ece(probs, labels, n_bins: int = 15) -> float:
    """Expected calibration error: ``sum_b |B_b|/N * |acc(B_b) - conf(B_b)|`` over equal-width
    confidence bins (Naeini et al. 2015; Guo et al. 2017). Default: 15 bins."""
    r = reliability(probs, labels, n_bins)
    n = sum(r["count"])
    return float(
        sum(c / n * abs(a - f) for c, a, f in zip(r["count"], r["accuracy"], r["confidence"]) if c)
    )


def auroc(scores, positives) -> float:
    """Area under the ROC curve of ``scores`` for telling ``positives`` (bool) from the rest:
    the probability that a random positive scores higher than a random negative, ties counted
    half (the Mann-Whitney U statistic). E.g. scores = predictive entropy, positives = errors."""
    s = _as_tensor(scores).flatten()
    pos = _as_tensor(positives, torch.bool).flatten()
    if s.shape != pos.shape:
        raise ValueError(f"scores and positives differ in size: {s.numel()} vs {pos.numel()}")
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    # average ranks of tied scores
    order = torch.argsort(s, stable=True)
    sorted_s = s[order]
    ranks = torch.empty_like(s)
    ranks[order] = torch.arange(1, s.numel() + 1, dtype=torch.float64)
    _, inverse, counts = torch.unique_consecutive(sorted_s, return_inverse=True, return_counts=True)
    ends = counts.cumsum(0).double()
    avg = ends - (counts.double() - 1) / 2
    ranks[order] = avg[inverse]
    u = ranks[pos].sum() - n_pos * (n_pos + 1) / 2
    return float(u / (n_pos * n_neg))


def gaussian_log_likelihood(y, samples, tau: float, *, per_point: bool = False):
    """MC-dropout test log-likelihood of targets ``y`` (N,) under ``T`` passes ``samples``
    (T, N) and model precision ``tau`` (Gal & Ghahramani 2016, eq. 8)::

        ll_n = logsumexp_t(-tau/2 (y_n - y_tn)**2) - log T - 1/2 log(2 pi) + 1/2 log tau

    Returns the mean over ``n`` (or the ``(N,)`` tensor with ``per_point=True``).
    """
    y = _as_tensor(y).flatten()
    s = _as_tensor(samples)
    s = s.reshape(s.shape[0], -1)
    if s.shape[1] != y.numel():
        raise ValueError(f"samples must be (T, N) with N = {y.numel()}, got {tuple(s.shape)}")
    if not tau > 0:
        raise ValueError(f"tau must be positive, got {tau}")
    T = s.shape[0]
    ll = (
        torch.logsumexp(-0.5 * tau * (y[None] - s) ** 2, 0)
        - math.log(T)
        - 0.5 * math.log(2 * math.pi)
        + 0.5 * math.log(tau)
    )
    return ll if per_point else float(ll.mean())


def rmse(y, pred) -> float:
    """Root mean squared error."""
    y, pred = _as_tensor(y).flatten(), _as_tensor(pred).flatten()
    return float(((y - pred) ** 2).mean().sqrt())


def classification_metrics(probs, labels, n_bins: int = 15) -> dict:
    """accuracy, nll, brier and ece in one dict."""
    return {
        "accuracy": accuracy(probs, labels),
        "nll": nll(probs, labels),
        "brier": brier(probs, labels),
        "ece": ece(probs, labels, n_bins),
    }
