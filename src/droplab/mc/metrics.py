"""Metrics of predictive distributions: accuracy, NLL, Brier, ECE and the reliability diagram,
AUROC, the Gaussian test log-likelihood and RMSE. Every function checks its inputs
(probabilities in [0, 1] summing to 1, labels in range) and names what is wrong.
"""

from __future__ import annotations

import math

import torch

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


def gaussian_log_likelihood(y, samples, tau, *, per_point: bool = False, batched: bool = False):
    """MC-dropout test log-likelihood of targets ``y`` (N,) under ``T`` passes ``samples``
    (T, N) and model precision ``tau`` (Gal & Ghahramani 2016, eq. 8)::

        ll_n = logsumexp_t(-tau/2 (y_n - y_tn)**2) - log T - 1/2 log(2 pi) + 1/2 log tau

    Returns the mean over ``n`` (or the ``(N,)`` tensor with ``per_point=True``). With
    ``batched=True``, ``G`` models at once: ``y`` (G, N), ``samples`` (G, T, N), ``tau`` a number
    or (G,); returns the ``(G,)`` tensor of means (or ``(G, N)`` with ``per_point=True``).
    """
    y = _as_tensor(y)
    s = _as_tensor(samples)
    if not batched:
        y, s = y.flatten()[None], s.reshape(1, s.shape[0], -1)
        if s.shape[2] != y.shape[1]:
            raise ValueError(
                f"samples must be (T, N) with N = {y.numel()}, got {tuple(s.shape[1:])}"
            )
    elif y.dim() != 2 or s.dim() != 3 or s.shape[::2] != y.shape:
        raise ValueError(
            f"samples must be (G, T, N) with (G, N) = {tuple(y.shape)}, got {tuple(s.shape)}"
        )
    tau_t = _as_tensor(tau).reshape(-1, 1)  # (G, 1) or (1, 1)
    if not bool((tau_t > 0).all()):
        raise ValueError(f"tau must be positive, got {tau}")
    ll = (
        torch.logsumexp(-0.5 * tau_t[:, None] * (y[:, None] - s) ** 2, 1)
        - math.log(s.shape[1])
        - 0.5 * math.log(2 * math.pi)
        + 0.5 * tau_t.log()
    )  # (G, N)
    if not batched:
        ll = ll[0]
        return ll if per_point else float(ll.mean())
    return ll if per_point else ll.mean(1)


def rmse(y, pred, *, batched: bool = False):
    """Root mean squared error; with ``batched=True``, of each row of ``y`` and ``pred``
    (G, N): the ``(G,)`` tensor."""
    y, pred = _as_tensor(y), _as_tensor(pred)
    if not batched:
        return float(((y.flatten() - pred.flatten()) ** 2).mean().sqrt())
    return ((y - pred) ** 2).mean(1).sqrt()


def classification_metrics(probs, labels, n_bins: int = 15) -> dict:
    """accuracy, nll, brier and ece in one dict."""
    return {
        "accuracy": accuracy(probs, labels),
        "nll": nll(probs, labels),
        "brier": brier(probs, labels),
        "ece": ece(probs, labels, n_bins),
    }
