"""The Fashion-MNIST Monte-Carlo dropout study: weight scaling against MC dropout for several
``T`` (accuracy, NLL, Brier, ECE, reliability), how well uncertainty tells errors (AUROC),
rotated images (accuracy falls; does uncertainty rise?), and sampling speed against a Python
loop. Plain functions of a trained model and the test set; ``droplab mc`` prints and saves.
"""

from __future__ import annotations

import math
import time

import torch
import torch.nn.functional as F

from droplab import mc
from droplab._timer import Stopwatch, best_of


def rotate(images, degrees: float):
    """Rotate ``(N, 784)`` or ``(N, 1, 28, 28)`` images by ``degrees`` counter-clockwise about
    their centre (bilinear, zeros outside), with ``affine_grid``/``grid_sample``."""
    x = images.reshape(-1, 1, 28, 28).float()
    a = math.radians(degrees)
    c, s = math.cos(a), math.sin(a)
    # the grid maps output to input coordinates: rotate the sampling points by -angle
    theta = torch.tensor([[c, s, 0.0], [-s, c, 0.0]], dtype=x.dtype).expand(x.shape[0], 2, 3)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out.reshape(images.shape)


def flat(images):
    return images.reshape(images.shape[0], -1).float()


def _entropy(probs: torch.Tensor) -> torch.Tensor:
    return -torch.special.xlogy(probs, probs).sum(1)


def calibration(model, x, y, samples: list[int], *, seed: int, progress=None) -> dict:
    """Weight scaling against MC dropout with ``T`` in ``samples`` passes: the metrics of each,
    the AUROC of uncertainty scores for telling errors, and reliability diagrams."""
    watch = Stopwatch()
    with torch.no_grad():
        ws = torch.softmax(model(x), -1)  # weight scaling: the deterministic eval network
    rows = [{"method": "weight scaling", "T": None, **mc.classification_metrics(ws, y)}]
    T_max = max(samples)
    pred = mc.mc_predict(model, x, T_max, seed=seed, keep_samples=True, progress=progress)
    seconds = watch.seconds()
    for T in sorted(samples):
        probs = pred.samples[:T].mean(0)
        rows.append({"method": "MC dropout", "T": T, **mc.classification_metrics(probs, y)})
    T_ref = 50 if 50 in samples else T_max
    mc_probs = pred.samples[:T_ref].mean(0)
    errors_ws = ws.argmax(1) != y
    errors_mc = mc_probs.argmax(1) != y
    ref = mc.mc_predict(model, x, T_ref, seed=seed) if T_ref != T_max else pred
    uncertainty = {
        "T": T_ref,
        "auroc_error_entropy_mc": mc.auroc(_entropy(mc_probs), errors_mc),
        "auroc_error_bald_mc": mc.auroc(ref.mutual_info, errors_mc),
        "auroc_error_maxprob_ws": mc.auroc(-ws.max(1).values, errors_ws),
        "auroc_error_entropy_ws": mc.auroc(_entropy(ws), errors_ws),
    }
    reliability = {
        "weight scaling": mc.reliability(ws, y),
        f"MC dropout (T={T_ref})": mc.reliability(mc_probs, y),
    }
    return {"metrics": rows, "uncertainty": uncertainty, "reliability": reliability,
            "seconds_mc": seconds}  # fmt: skip


def rotation(model, x, y, angles, *, samples: int, seed: int) -> list[dict]:
    """Accuracy, entropy, BALD, confidence and NLL of MC dropout and weight scaling on the
    images rotated by each angle: accuracy falls; uncertainty should rise."""
    points = []
    for angle in angles:
        xr = rotate(x, angle)
        with torch.no_grad():
            wsr = torch.softmax(model(xr), -1)
        pr = mc.mc_predict(model, xr, samples, seed=seed, progress=False)
        points.append(
            {
                "angle": float(angle),
                "accuracy_mc": mc.accuracy(pr.mean, y),
                "accuracy_ws": mc.accuracy(wsr, y),
                "entropy_mc": float(pr.entropy.mean()),
                "entropy_ws": float(_entropy(wsr).mean()),
                "mutual_info_mc": float(pr.mutual_info.mean()),
                "confidence_mc": float(pr.mean.max(1).values.mean()),
                "confidence_ws": float(wsr.max(1).values.mean()),
                "nll_mc": mc.nll(pr.mean, y),
                "nll_ws": mc.nll(wsr, y),
            }
        )
    return points


def loop_sample(model, x, T):
    """The baseline: a Python loop of T stochastic forward passes (mean softmax)."""
    with mc.mc_dropout(model), torch.no_grad():
        return torch.stack([torch.softmax(model(x), -1) for _ in range(T)]).mean(0)


def speed_table(model, x, sizes, *, T: int = 50) -> list[dict]:
    """Vectorized ``mc_predict`` against a Python loop of ``T`` passes, same run, same model,
    each the best CPU time (``time.process_time``: on a shared machine, wall time measures the
    neighbours) of 5 calls."""
    rows = []
    for n in sizes:
        xb = x[:n]
        vec = best_of(
            lambda xb=xb: mc.mc_predict(model, xb, T, progress=False), clock=time.process_time
        )
        loop = best_of(lambda xb=xb: loop_sample(model, xb, T), clock=time.process_time)
        rows.append(
            {
                "N": int(xb.shape[0]),
                "T": T,
                "vectorized_s": vec,
                "loop_s": loop,
                "speedup": loop / vec,
            }
        )
    return rows
