"""One training loop for both engines: the classic experiment and every run built on it.

``train(TrainConfig(...))`` trains the MLP of ``droplab.models`` on Fashion-MNIST (or any
``(train, test)`` pair with ``.images`` and ``.labels``), held in memory, with the PyTorch engine
or the NumPy engine (``droplab.scratch``). The loop is written once; a small engine adapter
(``_TorchEngine``, ``_ScratchEngine``) does the math of one batch, the evaluation and the
(de)serialization of its state.

With ``out_dir``, every epoch writes ``metrics.json``, ``metrics.csv`` and ``checkpoint``, each
atomically, checkpoint first: the checkpoint holds the model, optimizer, scheduler, random states,
the epochs so far and the config, so ``resume=True`` continues to exactly the weights that an
uninterrupted run reaches, and Ctrl-C loses at most the epoch in progress.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import math
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from droplab._fields import Range, check, option
from droplab._io import (
    CorruptFileError,
    atomic_torch_save,
    atomic_write_json,
    atomic_write_text,
    remove_stale_temps,
    torch_load_verified,
)
from droplab._threads import check_threads
from droplab._timer import Stopwatch
from droplab.errors import ConfigError
from droplab.models import ENGINES, INITS

MODES = ("inverted", "classic")
REDUCTIONS = ("nominal", "mean")
OPTIMIZERS = ("sgd", "momentum", "adagrad", "rmsprop", "adam")
SCHEDULERS = ("none", "step", "multistep", "exponential")
METRICS = ("epoch", "train_loss", "train_acc", "test_loss", "test_acc", "lr", "seconds")
CHECKPOINT = "checkpoint"
CHECKPOINT_FORMAT = 1
_CHECKPOINT_KEYS = ("config", "epochs", "engine", "numpy_rng", "dropout_steps")
EVAL_BATCH = 8192
# the ranges several fields share
INT_1 = Range(1, kind=int)
PROB_OPEN = Range(0.0, 1.0, hi_open=True)
POSITIVE = Range(0.0, lo_open=True)


class DivergedError(RuntimeError):
    """The loss became NaN or infinite: the epoch is not saved, the run stops."""


@dataclass
class TrainConfig:
    """Everything that defines a training run (saved in every checkpoint and metrics file).

    The defaults are the classic experiment of Dive into Deep Learning's dropout chapter.
    Constructing one validates every field (``ValueError`` naming the field and its range).
    """

    engine: str = option("torch", "torch, or scratch (the NumPy engine)", choices=ENGINES)
    hidden: tuple[int, ...] = option(
        (256, 256), "hidden layer widths", INT_1, items=0, metavar="N,N",
        note=" (layer widths; empty for no hidden layer)",
    )  # fmt: skip
    dropout: tuple[float, ...] = option(
        (0.2, 0.5),
        "drop probability per hidden layer, in {range}; 0 = none",
        Range(0.0, 1.0), items=0, note=", one per hidden layer", metavar="P,P", seps=",:",
        # the command line's droplab.cli.train.per_layer
        help_suffix="; one rate for every layer, or one per layer as 0.2,0.5 or 0.2:0.5 (the "
        "sweep's form)",
    )  # fmt: skip
    input_dropout: float = option(
        0.0, "drop probability of the input pixels, in {range}; 0 = none", PROB_OPEN, metavar="P"
    )
    mode: str = option(
        "inverted", "inverted (scale in training) or classic (scale at eval)", choices=MODES
    )
    init: str = option(
        "normal",
        "initial weights: normal = N(0, 0.01^2) as in the tutorial, torch = nn.Linear's default",
        choices=INITS,
    )
    epochs: int = option(5, "epochs: passes over the training set", INT_1)
    lr: float = option(0.5, "learning rate (the tutorial's plain SGD value)", POSITIVE)
    batch_size: int = option(256, "batch size; the last batch of an epoch may be smaller", INT_1)
    # "nominal" is the reference runs' (d2l's sgd(params, lr, batch_size), Gluon's
    # trainer.step(batch_size)). At lr 0.5 it moves the epoch's final test accuracy: README,
    # "Why 0.85"
    reduction: str = option(
        "nominal",
        "a batch's loss: nominal = sum / --batch-size, so the short last batch of an epoch takes "
        "a shorter step, as in the tutorial; mean = / its own length, as nn.CrossEntropyLoss",
        choices=REDUCTIONS,
    )
    optimizer: str = option("sgd", "update rule, as torch.optim", choices=OPTIMIZERS)
    momentum: float = option(0.9, "momentum of --optimizer momentum, in {range}", PROB_OPEN)
    nesterov: bool = option(False, "Nesterov momentum (--optimizer momentum)")
    alpha: float = option(0.99, "RMSprop's smoothing constant, in {range}", PROB_OPEN)
    betas: tuple[float, float] = option(
        (0.9, 0.999), "Adam's betas, each in {range}", PROB_OPEN, items=2, exact=True,
        metavar="B1,B2",
    )  # fmt: skip
    eps: float | None = option(
        None, "epsilon of adagrad/rmsprop/adam", POSITIVE, optional=True,
        default_text="torch's, 1e-10 or 1e-8",
    )  # fmt: skip
    weight_decay: float = option(
        0.0, "L2 penalty, in {range}, added to the gradient as torch.optim does", Range(0.0)
    )
    scheduler: str = option("none", "learning-rate schedule, stepped per epoch", choices=SCHEDULERS)
    step_size: int = option(2, "--scheduler step: epochs between decays", INT_1)
    gamma: float = option(
        0.5, "decay factor of every scheduler, in {range}", Range(0.0, 1.0, lo_open=True)
    )
    milestones: tuple[int, ...] = option(
        (3,), "--scheduler multistep: epochs after which lr *= gamma", INT_1, items=1,
        increasing=True, metavar="E,E",
    )  # fmt: skip
    subset: int | None = option(
        None, "train on the first N training examples", INT_1, optional=True, metavar="N",
        default_text="all 60,000",
    )  # fmt: skip
    seed: int = option(
        0, "seeds the weights, the shuffling and the masks", Range(0, 2**63 - 1, kind=int)
    )
    # torch intra-op threads; None = torch's default (one per core). Checked by check_threads
    # (its range is the machine's); the command line's default is DEFAULT_THREADS
    threads: int | None = None

    def __post_init__(self):
        for name in ("hidden", "dropout", "betas", "milestones"):
            value = getattr(self, name)
            if isinstance(value, (list, tuple)):
                setattr(self, name, tuple(value))
        _validate(self)

    def to_dict(self) -> dict:
        """A JSON-safe dict (tuples as lists) that ``from_dict`` turns back into this config."""
        return {f.name: _jsonable(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        """The config from a dict of field values (missing fields take their defaults)."""
        if not isinstance(d, dict):
            raise ValueError(f"a TrainConfig is made from a dict, got {type(d).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(
                f"unknown TrainConfig field(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}"
            )
        return cls(**d)

    def replace(self, **changes) -> TrainConfig:
        """A copy with some fields changed (validated)."""
        return dataclasses.replace(self, **changes)


@dataclass
class TrainResult:
    """What ``train`` returns: the config, one metrics dict per epoch, the model, the wall time."""

    config: TrainConfig
    epochs: list[
        dict
    ]  # [{"epoch", "train_loss", "train_acc", "test_loss", "test_acc", "lr", "seconds"}]
    model: Any  # torch.nn.Sequential or droplab.scratch.Sequential, in eval mode
    seconds: float  # wall time of this call (a resumed run: the epochs it trained)

    @property
    def final(self) -> dict:
        """The last epoch's metrics."""
        return self.epochs[-1]


# ----------------------------------------------------------------------------------------------
# validation
# ----------------------------------------------------------------------------------------------


def _jsonable(value):
    return list(value) if isinstance(value, tuple) else value


def _validate(c: TrainConfig) -> None:
    """Every field in its ``option``'s range, then what involves two fields."""
    check(c)
    check_threads(c.threads)
    if len(c.dropout) != len(c.hidden):
        raise ConfigError(
            "dropout",
            f"must have one rate per hidden layer: {len(c.hidden)} hidden layers "
            f"{list(c.hidden)}, {len(c.dropout)} rates {list(c.dropout)}",
        )
    if c.nesterov and c.optimizer == "momentum" and c.momentum == 0:
        raise ConfigError("nesterov", "needs momentum > 0")


# ----------------------------------------------------------------------------------------------
# engines: the math of one batch, evaluation, and state (de)serialization
# ----------------------------------------------------------------------------------------------


def _eps(c: TrainConfig) -> float:
    if c.eps is not None:
        return c.eps
    return 1e-10 if c.optimizer == "adagrad" else 1e-8


def _optimizer(optim, params, c: TrainConfig):
    """The optimizer of ``c`` from ``optim`` (``torch.optim`` or ``droplab.scratch.optim``)."""
    wd = c.weight_decay
    if c.optimizer == "sgd":
        return optim.SGD(params, lr=c.lr, weight_decay=wd)
    if c.optimizer == "momentum":
        return optim.SGD(params, lr=c.lr, momentum=c.momentum, nesterov=c.nesterov, weight_decay=wd)
    if c.optimizer == "adagrad":
        return optim.Adagrad(params, lr=c.lr, eps=_eps(c), weight_decay=wd)
    if c.optimizer == "rmsprop":
        return optim.RMSprop(params, lr=c.lr, alpha=c.alpha, eps=_eps(c), weight_decay=wd)
    return optim.Adam(params, lr=c.lr, betas=c.betas, eps=_eps(c), weight_decay=wd)


def _scheduler(lr_scheduler, opt, c: TrainConfig):
    if c.scheduler == "step":
        return lr_scheduler.StepLR(opt, step_size=c.step_size, gamma=c.gamma)
    if c.scheduler == "multistep":
        return lr_scheduler.MultiStepLR(opt, milestones=list(c.milestones), gamma=c.gamma)
    if c.scheduler == "exponential":
        return lr_scheduler.ExponentialLR(opt, gamma=c.gamma)
    return None


def _step_scale(length: int, nominal: int | None) -> float:
    """The factor on a batch's mean loss: ``length / batch_size`` for ``reduction="nominal"``.

    ``sum(losses) / batch_size == mean(losses) * length / batch_size``; exactly 1 for full batches.
    """
    return 1.0 if nominal is None else length / nominal


def _dropout_layers(model) -> list:
    """The seeded dropout layers (their ``step`` counters pick the masks) of either engine."""
    return [
        m for m in model.modules() if getattr(m, "seed", None) is not None and hasattr(m, "step")
    ]


class _TorchEngine:
    """The PyTorch engine: float32 tensors, autograd, ``torch.optim``."""

    def __init__(self, c: TrainConfig):
        import torch
        from torch import nn

        self.torch = torch
        self.model = build_model(c)
        self.loss_fn = nn.CrossEntropyLoss()
        self.opt = _optimizer(torch.optim, self.model.parameters(), c)
        self.sched = _scheduler(torch.optim.lr_scheduler, self.opt, c)
        self.nominal = c.batch_size if c.reduction == "nominal" else None

    def arrays(self, images, labels):
        t = self.torch
        x = t.as_tensor(images).reshape(len(labels), -1).to(t.float32).contiguous()  # (N, 784)
        return x, t.as_tensor(labels).to(t.int64)  # (N,)

    def start_epoch(self, order: np.ndarray):
        self.model.train()
        self.loss_sum = self.torch.zeros((), dtype=self.torch.float64)
        self.correct = self.torch.zeros((), dtype=self.torch.int64)
        return self.torch.from_numpy(order)

    def step(self, x, y) -> None:
        out = self.model(x)  # (B, 10)
        loss = self.loss_fn(out, y)  # the batch mean
        scale = _step_scale(len(y), self.nominal)
        self.opt.zero_grad(set_to_none=True)
        (loss if scale == 1.0 else loss * scale).backward()
        self.opt.step()
        with self.torch.no_grad():
            self.loss_sum += loss.detach() * len(y)
            self.correct += (out.argmax(1) == y).sum()

    def end_epoch(self) -> tuple[float, int]:
        return float(self.loss_sum), int(self.correct)

    def evaluate(self, x, y) -> tuple[float, float]:
        t = self.torch
        self.model.eval()
        loss, correct = 0.0, 0
        with t.no_grad():
            for i in range(0, len(y), EVAL_BATCH):
                out = self.model(x[i : i + EVAL_BATCH])
                yb = y[i : i + EVAL_BATCH]
                loss += float(t.nn.functional.cross_entropy(out, yb, reduction="sum"))
                correct += int((out.argmax(1) == yb).sum())
        self.model.train()
        return loss / len(y), correct / len(y)

    def state(self) -> dict:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.opt.state_dict(),
            "scheduler": self.sched.state_dict() if self.sched else None,
            "torch_rng": self.torch.get_rng_state(),
        }

    def load_state(self, s: dict) -> None:
        self.model.load_state_dict(s["model"])
        self.opt.load_state_dict(s["optimizer"])
        if self.sched:
            self.sched.load_state_dict(s["scheduler"])
        self.torch.set_rng_state(s["torch_rng"])


class _ScratchEngine:
    """The NumPy engine (``droplab.scratch``): float32 arrays, hand-written backward passes."""

    def __init__(self, c: TrainConfig):
        from droplab import scratch

        self.model = build_model(c)
        self.loss_fn = scratch.CrossEntropyLoss()
        self.opt = _optimizer(scratch.optim, self.model.parameters(), c)
        self.sched = _scheduler(scratch.lr_scheduler, self.opt, c)
        self.nominal = c.batch_size if c.reduction == "nominal" else None

    def arrays(self, images, labels):
        x = np.ascontiguousarray(_numpy(images).reshape(len(labels), -1), dtype=np.float32)
        return x, _numpy(labels).astype(np.int64)

    def start_epoch(self, order: np.ndarray):
        self.model.train()
        self.loss_sum, self.correct = 0.0, 0
        return order

    def step(self, x, y) -> None:
        out = self.model(x)  # (B, 10)
        loss = self.loss_fn(out, y)  # the batch mean
        scale = _step_scale(len(y), self.nominal)
        grad = self.loss_fn.backward()
        self.opt.zero_grad()
        self.model.backward(grad if scale == 1.0 else grad * np.float32(scale), input_grad=False)
        self.opt.step()
        self.loss_sum += float(loss) * len(y)
        self.correct += int((out.argmax(1) == y).sum())

    def end_epoch(self) -> tuple[float, int]:
        return self.loss_sum, self.correct

    def evaluate(self, x, y) -> tuple[float, float]:
        from droplab import scratch

        self.model.eval()
        loss_fn = scratch.CrossEntropyLoss(reduction="sum")
        loss, correct = 0.0, 0
        for i in range(0, len(y), EVAL_BATCH):
            out = self.model(x[i : i + EVAL_BATCH])
            yb = y[i : i + EVAL_BATCH]
            loss += float(loss_fn(out, yb))
            correct += int((out.argmax(1) == yb).sum())
        self.model.train()
        return loss / len(y), correct / len(y)

    def state(self) -> dict:
        return _to_torch(
            {
                "model": self.model.state_dict(),
                "optimizer": self.opt.state_dict(),
                "scheduler": self.sched.state_dict() if self.sched else None,
            }
        )

    def load_state(self, s: dict) -> None:
        s = _to_numpy(s)
        self.model.load_state_dict(s["model"])
        self.opt.load_state_dict(s["optimizer"])
        if self.sched:
            self.sched.load_state_dict(s["scheduler"])


def _numpy(a) -> np.ndarray:
    return a.numpy() if hasattr(a, "numpy") else np.asarray(a)


def _to_torch(obj):
    """NumPy arrays and scalars -> tensors and Python numbers, so ``weights_only`` loads them."""
    import torch

    if isinstance(obj, np.ndarray):
        return torch.from_numpy(obj.copy())
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, dict):
        return {k: _to_torch(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_torch(v) for v in obj)
    return obj


def _to_numpy(obj):
    import torch

    if isinstance(obj, torch.Tensor):
        return obj.numpy().copy()
    if isinstance(obj, dict):
        return {k: _to_numpy(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_numpy(v) for v in obj)
    return obj


_ENGINES = {"torch": _TorchEngine, "scratch": _ScratchEngine}


# ----------------------------------------------------------------------------------------------
# the loop
# ----------------------------------------------------------------------------------------------


def train(
    config: TrainConfig,
    *,
    out_dir=None,
    resume: bool = False,
    progress: bool = True,
    data=None,
    log=print,
) -> TrainResult:
    """Train the MLP described by ``config``; return its per-epoch metrics and the model.

    Args:
        config: the run (``TrainConfig``).
        out_dir: if given, write ``metrics.json``, ``metrics.csv`` and ``checkpoint`` there after
            every epoch (atomically). Default: ``None`` (write nothing)
        resume: continue from ``out_dir/checkpoint`` if there is one (its config must equal
            ``config`` except for ``epochs`` and ``threads``); without one, ``log`` says so and
            the run starts at epoch 1 (what a sweep's first attempt at a trial wants; the CLI's
            ``--resume`` refuses instead). Needs ``out_dir``. Default: ``False``
        progress: show what the run is doing (``rich``, transient): a status while the data
            loads, then a bar per epoch with its ETA and the running loss and accuracy.
            Default: ``True``
        data: a ``(train, test)`` pair with ``.images`` (``(N, 784)`` or ``(N, 1, 28, 28)``, floats
            in [0, 1]) and ``.labels``. Default: ``droplab.data.load_fashion_mnist()``
        log: called with one line of text per epoch (the tutorial's
            ``epoch 5, loss 0.4166, train acc 0.849, test acc 0.864``); ``None`` for silence.

    Example (the classic experiment, about 10 s on 2 cores)::

        result = train(TrainConfig(), out_dir="runs/classic")
        result.final["test_acc"]  # about 0.86
    """
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    if resume and out_dir is None:
        raise ValueError("resume=True needs out_dir, the folder holding the checkpoint")
    log = log or (lambda *_: None)
    out = Path(out_dir) if out_dir is not None else None
    with _Bars(progress, config.epochs) as bars:
        if data is None:
            bars.status("loading Fashion-MNIST")
            from droplab.data import load_fashion_mnist

            data = load_fashion_mnist()
        train_set, test_set = data
        bars.status("building the model")

        import torch

        threads_before = torch.get_num_threads()
        if config.threads:
            torch.set_num_threads(config.threads)
        try:
            return _run(config, out, resume, bars, train_set, test_set, log)
        finally:
            torch.set_num_threads(threads_before)


def _run(c: TrainConfig, out: Path | None, resume: bool, bars, train_set, test_set, log):
    import torch

    run_watch = Stopwatch()
    torch.manual_seed(c.seed)
    engine = _ENGINES[c.engine](c)
    n = len(train_set.labels) if c.subset is None else min(c.subset, len(train_set.labels))
    train = engine.arrays(train_set.images[:n], train_set.labels[:n])
    test = engine.arrays(test_set.images, test_set.labels)
    shuffle = np.random.default_rng(np.random.SeedSequence([c.seed, 2]))
    dropouts = _dropout_layers(engine.model)
    epochs: list[dict] = []

    if resume and out is not None and (out / CHECKPOINT).exists():
        epochs = _resume(out / CHECKPOINT, c, engine, shuffle, dropouts)
        log(f"resuming from {out / CHECKPOINT} after epoch {len(epochs)}")
    elif resume:
        log(f"no checkpoint in {out}: starting at epoch 1")

    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(out)  # left by a run killed mid-write
    batches = math.ceil(n / c.batch_size)
    try:
        for epoch in range(len(epochs) + 1, c.epochs + 1):
            bars.start(epoch, batches)
            row = _epoch(epoch, c, engine, shuffle.permutation(n), train, test, bars)
            if not (math.isfinite(row["train_loss"]) and math.isfinite(row["test_loss"])):
                raise DivergedError(
                    f"training diverged in epoch {epoch}: train loss {row['train_loss']}, test "
                    f"loss {row['test_loss']} (lr {c.lr:g}; try a smaller lr)"
                    + (f"; {out / CHECKPOINT} keeps epoch {len(epochs)}" if out and epochs else "")
                )
            epochs.append(row)
            if out is not None:
                with _sigint_deferred():
                    _save(out, c, epochs, engine, shuffle, dropouts)
            log(epoch_line(row))
    except KeyboardInterrupt:
        if out is not None and epochs:
            log(
                f"interrupted: {out / CHECKPOINT} holds epoch {len(epochs)}; "
                "run again with resume (--resume) to continue"
            )
        raise
    engine.model.eval()
    return TrainResult(c, epochs, engine.model, run_watch.seconds())


def _resume(path: Path, c: TrainConfig, engine, shuffle, dropouts) -> list[dict]:
    """Restore the state of the checkpoint ``path`` (made with the same settings); returns the
    metrics of its epochs. A checkpoint that does not fit is a ``CorruptFileError``."""
    ckpt = _load_checkpoint(path)
    _check_resumable(TrainConfig.from_dict(ckpt["config"]), c)
    try:
        engine.load_state(ckpt["engine"])
        shuffle.bit_generator.state = ckpt["numpy_rng"]
        for layer, step in zip(dropouts, ckpt["dropout_steps"], strict=True):
            _set_dropout_step(layer, step)
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise CorruptFileError(f"{path} does not fit this run ({type(e).__name__}: {e})") from None
    return list(ckpt["epochs"])


def _epoch(epoch: int, c: TrainConfig, engine, order, train, test, bars) -> dict:
    """One pass over the training rows ``order``, then the test set: the epoch's metrics row."""
    watch = Stopwatch()
    (x_train, y_train), n = train, len(order)
    order = engine.start_epoch(order)
    for b in range(math.ceil(n / c.batch_size)):
        idx = order[b * c.batch_size : (b + 1) * c.batch_size]
        engine.step(x_train[idx], y_train[idx])
        bars.advance(min((b + 1) * c.batch_size, n), engine.end_epoch)
    loss_sum, correct = engine.end_epoch()
    test_loss, test_acc = engine.evaluate(*test)
    lr = engine.opt.param_groups[0]["lr"]  # the rate this epoch used
    if engine.sched:
        engine.sched.step()
    return {
        "epoch": epoch,
        "train_loss": loss_sum / n,
        "train_acc": correct / n,
        "test_loss": test_loss,
        "test_acc": test_acc,
        "lr": float(lr),
        "seconds": watch.seconds(),
    }


def epoch_line(row: dict) -> str:
    """The tutorial's line: ``epoch 5, loss 0.4166, train acc 0.849, test acc 0.864``."""
    return (
        f"epoch {row['epoch']}, loss {row['train_loss']:.4f}, train acc {row['train_acc']:.3f}, "
        f"test acc {row['test_acc']:.3f}"
    )


def describe(c: TrainConfig) -> str:
    """A one-line summary of a config: engine, network, dropout, optimizer."""
    drop = ", ".join(f"{p:g}" for p in c.dropout) or "-"
    if c.input_dropout:
        drop = f"{c.input_dropout:g} (input), {drop}"
    net = "-".join(str(s) for s in (784, *c.hidden, 10))
    sub = f", subset {c.subset}" if c.subset else ""
    mean = " (mean loss)" if c.reduction == "mean" else ""
    return (
        f"{c.engine} engine, MLP {net}, dropout {drop} ({c.mode}), {c.optimizer} lr {c.lr:g}, "
        f"batch {c.batch_size}{mean}, seed {c.seed}{sub}"
    )


class _Bars:
    """What a run shows while it works (or nothing, when disabled).

    From the first moment a status line says what is happening ("loading Fashion-MNIST"); then
    each epoch gets a bar over its batches with the elapsed time, the ETA and the running loss
    and accuracy as Keras prints them (``loss: 0.4123 - accuracy: 0.8471``). Everything here is
    transient: what stays on screen is the one line per epoch that ``log`` prints.
    """

    REFRESH = 0.25  # seconds between updates of the running numbers (each one reads the sums)

    def __init__(self, enabled: bool, epochs: int):
        self.enabled, self.epochs = enabled, epochs
        self.progress = self.task = self._status = None
        self._shown = 0.0

    def __enter__(self):
        if self.enabled:
            from droplab._console import console

            self.console = console()
            # piped or captured: nothing to animate, and the epoch lines say it all
            self.enabled = self.console.is_terminal
        return self

    def status(self, text: str) -> None:
        """Show ``text`` with a spinner until the first epoch starts."""
        if not self.enabled:
            return
        if self._status is None:
            self._status = self.console.status(text)
            self._status.start()
        else:
            self._status.update(text)

    def start(self, epoch: int, batches: int) -> None:
        if not self.enabled:
            return
        if self._status is not None:
            self._status.stop()
            self._status = None
        if self.progress is None:
            self.progress = self._new_progress()
            self.progress.start()
        if self.task is not None:
            self.progress.remove_task(self.task)
        self.task = self.progress.add_task(
            f"epoch {epoch}/{self.epochs}", total=batches, metrics=""
        )
        self._shown = time.perf_counter()

    def _new_progress(self):
        from droplab._console import progress_bar

        return progress_bar(
            self.console,
            "{task.description}",
            "batches",
            tail="{task.fields[metrics]}",
            transient=True,
        )

    def advance(self, seen: int, running) -> None:
        """One batch done; ``running()`` gives ``(loss_sum, correct)`` over the ``seen`` examples."""
        if self.progress is None:
            return
        now = time.perf_counter()
        if now - self._shown < self.REFRESH:
            self.progress.advance(self.task)
            return
        self._shown = now
        loss_sum, correct = running()
        self.progress.update(
            self.task,
            advance=1,
            metrics=f"loss: {loss_sum / seen:.4f} - accuracy: {correct / seen:.4f}",
        )

    def __exit__(self, *exc):
        if self._status is not None:
            self._status.stop()
        if self.progress is not None:
            self.progress.stop()
        return False


# ----------------------------------------------------------------------------------------------
# files: metrics and checkpoints
# ----------------------------------------------------------------------------------------------


def _dropout_step(layer) -> int:
    return int(getattr(layer, "step", 0))


def _set_dropout_step(layer, step: int) -> None:
    layer.step = int(step)


def _save(out: Path, c: TrainConfig, epochs, engine, shuffle, dropouts) -> None:
    # the checkpoint first: it is the source of truth, and metrics are rebuilt from it on resume
    atomic_torch_save(
        out / CHECKPOINT,
        {
            "format": CHECKPOINT_FORMAT,
            "config": c.to_dict(),
            "epochs": epochs,
            "engine": engine.state(),
            "numpy_rng": shuffle.bit_generator.state,
            "dropout_steps": [_dropout_step(d) for d in dropouts],
        },
    )
    write_metrics(out, c, epochs)


def write_metrics(out, config: TrainConfig, epochs: list[dict]) -> None:
    """Write ``metrics.json`` (with the provenance block of ``droplab.provenance``) and
    ``metrics.csv`` in ``out`` (atomically)."""
    import torch

    from droplab.provenance import provenance

    out = Path(out)
    atomic_write_json(
        out / "metrics.json",
        {
            "config": config.to_dict(),
            "epochs": epochs,
            "provenance": provenance(threads=torch.get_num_threads()),
        },
    )
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=METRICS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(epochs)
    atomic_write_text(out / "metrics.csv", buf.getvalue())


def read_metrics(run_dir) -> tuple[TrainConfig, list[dict]]:
    """The config and epochs of ``run_dir/metrics.json``."""
    import json

    with open(Path(run_dir) / "metrics.json", encoding="utf-8") as f:
        d = json.load(f)
    return TrainConfig.from_dict(d["config"]), d["epochs"]


def _load_checkpoint(path) -> dict:
    """A checkpoint ``_save`` wrote: digest checked, every key there (``CorruptFileError``)."""
    ckpt = torch_load_verified(path, "a droplab training checkpoint")
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise CorruptFileError(
            f"{path} is not a droplab training checkpoint (format {CHECKPOINT_FORMAT})"
        )
    missing = [k for k in _CHECKPOINT_KEYS if k not in ckpt]
    if missing:
        raise CorruptFileError(f"{path} is an incomplete checkpoint: no {', '.join(missing)}")
    return ckpt


def _check_resumable(saved: TrainConfig, new: TrainConfig) -> None:
    free = {"epochs", "threads"}
    diff = [
        f"{f.name} ({getattr(saved, f.name)!r} saved, {getattr(new, f.name)!r} now)"
        for f in dataclasses.fields(TrainConfig)
        if f.name not in free and getattr(saved, f.name) != getattr(new, f.name)
    ]
    if diff:
        raise ValueError(
            "cannot resume: the checkpoint was made with a different " + "; ".join(diff)
        )


def check_out_dir(out, config: TrainConfig, *, resume: bool = False, force: bool = False) -> None:
    """Refuse to train into ``out`` where that would lose or fake a result (before any work).

    - ``resume`` where ``out`` holds no checkpoint: ``FileNotFoundError`` (resuming would
      silently start from scratch);
    - not ``resume`` where ``out`` holds an earlier run with another config (all fields but
      ``threads`` compared): ``FileExistsError``, unless ``force`` (then it is overwritten).
      The same config again is allowed: the run it writes is the one already there.
    """
    out = Path(out)
    if resume:
        if not (out / CHECKPOINT).exists():
            raise FileNotFoundError(
                f"--resume: {out} holds no checkpoint to continue (run without --resume to start)"
            )
        return
    if force or not (out / "metrics.json").exists():
        return
    try:
        saved, _ = read_metrics(out)
    except (OSError, ValueError, KeyError, TypeError):
        saved = None
    if saved is not None and saved.replace(threads=None) == config.replace(threads=None):
        return
    what = "a run with other settings" if saved is not None else "files of an unreadable run"
    raise FileExistsError(
        f"{out} already holds {what}; pass --force to overwrite it, --resume to continue it, "
        "or choose another --out"
    )


def build_model(c: TrainConfig):
    """The freshly initialized MLP of a config, for its engine (``droplab.models.mlp``)."""
    from droplab.models import mlp

    return mlp(
        c.hidden,
        c.dropout,
        engine=c.engine,
        mode=c.mode,
        init=c.init,
        seed=c.seed,
        input_dropout=c.input_dropout,
    )


def load_model(checkpoint_path):
    """``(model, config)`` from a checkpoint written by ``train`` (or a run folder holding one).

    The model is in eval mode: a ``torch.nn.Sequential`` for the torch engine, a
    ``droplab.scratch.Sequential`` for the NumPy engine.
    """
    path = Path(checkpoint_path)
    if path.is_dir():
        path = path / CHECKPOINT
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}")
    ckpt = _load_checkpoint(path)
    try:
        config = TrainConfig.from_dict(ckpt["config"])
        model = build_model(config)
        state = ckpt["engine"]["model"]
        model.load_state_dict(state if config.engine == "torch" else _to_numpy(state))
        for layer, step in zip(_dropout_layers(model), ckpt["dropout_steps"], strict=True):
            _set_dropout_step(layer, step)
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise CorruptFileError(
            f"{path} does not hold a usable model ({type(e).__name__}: {e})"
        ) from None
    model.eval()
    return model, config


@contextlib.contextmanager
def _sigint_deferred():
    """Hold Ctrl-C while files are written, then raise it: an interrupt never splits a save."""
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    ):  # Ctrl-C does not raise here (a worker ignoring it, a custom handler): leave it alone
        yield
        return
    caught = []
    previous = signal.signal(signal.SIGINT, lambda *a: caught.append(a))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if caught:
            raise KeyboardInterrupt
