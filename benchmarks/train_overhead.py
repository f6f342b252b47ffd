"""What droplab's training loop costs: ``droplab.train.train`` against a plain PyTorch loop.

Same process, same data (Fashion-MNIST held in memory as tensors), same network (784-256-256-10,
dropout 0.2 / 0.5, weights N(0, 0.01^2)), same SGD (lr 0.5, batch 256) and the same work per epoch
(train, accumulate train loss and accuracy, evaluate the test set). The plain loop is what one
writes by hand with ``torch.nn.Dropout``; droplab's adds seeded counter-based masks, metrics and
the engine adapter. Runs alternate (plain, droplab torch, droplab scratch, ...); the fastest epoch
of each (the one least disturbed by other load on the machine) and the median are reported, with
the ratios the project targets, computed on both:

    droplab torch engine / plain PyTorch   <= 1.2
    droplab scratch engine / droplab torch <= 1.5

Usage: python benchmarks/train_overhead.py [--epochs 2] [--repeats 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics

import torch
from torch import nn

from droplab._timer import Stopwatch
from droplab.data import load_fashion_mnist
from droplab.models import initial_weights
from droplab.train import TrainConfig, train


def plain_pytorch(train_set, test_set, epochs: int, seed: int = 0) -> list[float]:
    """The loop one writes by hand; returns seconds per epoch."""
    torch.manual_seed(seed)
    layers = [nn.Linear(784, 256), nn.ReLU(), nn.Dropout(0.2), nn.Linear(256, 256), nn.ReLU(),
              nn.Dropout(0.5), nn.Linear(256, 10)]  # fmt: skip
    model = nn.Sequential(*layers)
    linears = [m for m in layers if isinstance(m, nn.Linear)]
    with torch.no_grad():
        for m, (w, b) in zip(linears, initial_weights([784, 256, 256, 10], "normal", seed)):
            m.weight.copy_(torch.from_numpy(w))
            m.bias.copy_(torch.from_numpy(b))
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    loss_fn = nn.CrossEntropyLoss()
    x, y = train_set.images, train_set.labels
    xt, yt = test_set.images, test_set.labels
    seconds = []
    for _ in range(epochs):
        watch = Stopwatch()
        model.train()
        loss_sum = torch.zeros((), dtype=torch.float64)
        correct = torch.zeros((), dtype=torch.int64)
        for idx in torch.randperm(len(y)).split(256):
            xb, yb = x[idx], y[idx]
            out = model(xb)
            loss = loss_fn(out, yb)
            opt.zero_grad(set_to_none=True)
            step_loss = loss
            if len(yb) < 256:  # the recipe's sum / batch_size: a short batch steps less
                step_loss = loss * (len(yb) / 256)
            step_loss.backward()
            opt.step()
            with torch.no_grad():
                loss_sum += loss.detach() * len(yb)
                correct += (out.argmax(1) == yb).sum()
        model.eval()
        with torch.no_grad():
            out = model(xt)
            test_loss = float(loss_fn(out, yt))
            test_acc = float((out.argmax(1) == yt).float().mean())
        _ = (float(loss_sum) / len(y), int(correct) / len(y), test_loss, test_acc)
        seconds.append(watch.seconds())
    return seconds


def droplab_train(data, epochs: int, engine: str, threads: int) -> list[float]:
    config = TrainConfig(engine=engine, epochs=epochs, threads=threads)
    result = train(config, data=data, progress=False, log=None)
    return [e["seconds"] for e in result.epochs]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=2, help="epochs per run (default: 2)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each (default: 3)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default: 2)")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    data = load_fashion_mnist()
    runs = {
        "plain PyTorch loop": lambda: plain_pytorch(*data, args.epochs),
        "droplab.train, torch engine": lambda: droplab_train(
            data, args.epochs, "torch", args.threads
        ),
        "droplab.train, scratch engine": lambda: droplab_train(
            data, args.epochs, "scratch", args.threads
        ),
    }
    for fn in runs.values():  # warm-up: first-call costs (numba, allocator) are not the loop's
        fn()
    per_epoch: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.repeats):
        for name, fn in runs.items():
            per_epoch[name] += fn()
    best = {name: min(v) for name, v in per_epoch.items()}
    med = {name: statistics.median(v) for name, v in per_epoch.items()}

    print(
        f"torch {torch.__version__}, {args.threads} threads, {args.epochs} epochs x "
        f"{args.repeats} runs each; seconds per epoch"
    )
    print(f"  {'':32s} {'fastest':>8s} {'median':>8s} {'slowest':>8s}")
    for name, v in per_epoch.items():
        print(f"  {name:32s} {best[name]:8.3f} {med[name]:8.3f} {max(v):8.3f}")
    for label, stat in (("fastest", best), ("median", med)):
        plain, ours, scratch = stat.values()
        print(
            f"{label:8s} droplab torch / plain PyTorch {ours / plain:.2f}x (target <= 1.2), "
            f"scratch / droplab torch {scratch / ours:.2f}x (target <= 1.5)"
        )


if __name__ == "__main__":
    main()
