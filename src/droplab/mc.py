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
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.modules.dropout import _DropoutNd

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
    eval) run once on the ``N`` inputs, and only the rest is repeated ``T`` times.

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

    acc = {}  # per-example sums over passes, float64 for T in the thousands
    first, identical = None, T > 1
    kept = []
    bar = _progress_bar(len(starts), progress)
    with fork, mc_dropout(model), torch.no_grad(), bar or contextlib.nullcontext():
        if seed is not None:
            torch.manual_seed(seed)
        job = bar.add_task("mc", total=len(starts)) if bar else None
        prefix, rest = _deterministic_prefix(model)
        h = prefix(x) if prefix is not None else x  # the same on every pass: computed once
        for s in starts:
            e = min(s + chunk, rows)
            idx = torch.arange(s, e, device=device) % n  # pass-major rows
            out = rest(h.index_select(0, idx))
            if task == "classify":
                p = torch.softmax(out.float(), -1) if from_logits else out.float()
                parts = {"p": p, "p2": p * p, "h": _entropy(p)}
            else:
                y = out.float()
                parts = {"y": y, "y2": y * y}
            v = parts["p" if task == "classify" else "y"]
            fresh = min(e, n) - s  # rows of pass 0 in this chunk: kept to compare later passes
            if fresh > 0:
                first = v[:fresh].clone() if first is None else torch.cat([first, v[:fresh]])
            if identical and e > n:
                later = slice(max(fresh, 0), None)
                identical = torch.equal(v[later], first[idx[later]])
            for k, v in parts.items():
                if k not in acc:
                    acc[k] = torch.zeros((n, *v.shape[1:]), dtype=torch.float64, device=device)
                acc[k].index_add_(0, idx, v.double())
            if keep_samples:
                kept.append(parts["p"] if task == "classify" else parts["y"])
            if bar:
                bar.advance(job)

    dtype = torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype
    dtype = dtype if dtype.is_floating_point else torch.float32
    kept_t = torch.cat(kept).reshape(T, n, *kept[0].shape[1:]) if keep_samples else None
    if task == "classify":
        mean = acc["p"] / T
        var = (acc["p2"] / T - mean * mean).clamp_min(0)
        entropy = _entropy(mean)
        mi = (entropy - acc["h"] / T).clamp(min=0)
        mi = torch.minimum(mi, entropy)  # Jensen: 0 <= BALD <= H; clamp float round-off
        result = MCPrediction(
            mean.to(dtype), var.to(dtype), entropy.to(dtype), mi.to(dtype), kept_t, task, T
        )
    else:
        mean = acc["y"] / T
        var = (acc["y2"] / T - mean * mean).clamp_min(0)
        if tau is not None:
            var = var + 1.0 / tau
        result = MCPrediction(mean.to(dtype), var.to(dtype), None, None, kept_t, task, T)

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
