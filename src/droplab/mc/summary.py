"""The summary of Monte-Carlo passes: ``MCPrediction``, and the per-example running sums over
the repeated batch (pass-major rows) that ``mc_predict`` and the blocked fast path share.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


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


def fill_rows(dst: torch.Tensor, h: torch.Tensor, g: int, n: int) -> torch.Tensor:
    """Write rows ``g .. g+len(dst)`` of the repeated batch of ``h`` into ``dst`` (contiguous)."""
    for i, j, n0, k in _pieces(g, dst.shape[0], n):
        if k:
            dst[i:j].view(k, *h.shape).copy_(h.expand(k, *h.shape))
        else:
            dst[i:j].copy_(h[n0 : n0 + j - i])
    return dst


def accumulate(acc: torch.Tensor, q: torch.Tensor, g: int, n: int) -> None:
    """``acc[:, e] += q[:, i]`` (in float64) for every local row ``i`` of example ``e``, axis 1
    of ``q`` holding rows ``g ..`` of the repeated batch."""
    for i, j, n0, k in _pieces(g, q.shape[1], n):
        part = q[:, i:j]
        if k:
            acc.add_(part.unflatten(1, (k, n)).sum(1, dtype=torch.float64))
        else:
            acc[:, n0 : n0 + j - i].add_(part)


class Summary:
    """Per-example sums over the passes (float64, so that ``T`` in the thousands stays exact),
    the kept samples, and whether every pass repeats the first.

    Each chunk of outputs becomes one float32 tensor ``q`` with the rows on axis 1, summed per
    example by ``accumulate``: classification ``[p (C rows), p**2 (C rows), H[p]]`` with the
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
        accumulate(self.acc, q, g, self.n)

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
