"""One epoch of the classic MLP in the NumPy engine vs PyTorch, same run, same batches.

The classic experiment: 784-256-256-10, ReLU, dropout 0.2 / 0.5, SGD lr 0.5, batch 256, on
Fashion-MNIST (60,000 images, 235 steps an epoch). Both engines start from the same weights and
see the same batches; each epoch is timed after a short warm-up, and the median of the repeats is
reported with the ratio to PyTorch (target: NumPy engine <= 1.5x torch).

    python benchmarks/scratch_vs_torch.py [--repeats 3] [--threads N] [--synthetic]

Rows: torch with ``torch.nn.Dropout`` (the reference), torch with droplab's seeded
``droplab.Dropout`` (the torch engine of ``droplab train``), and the NumPy engine with seeded
(counter-based, the same bits as the torch engine) and with ``np.random.Generator`` masks.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys

import numpy as np

from droplab._timer import Stopwatch

P1, P2, LR, BATCH, HIDDEN = 0.2, 0.5, 0.5, 256, 256


def load_data(synthetic: bool):
    if not synthetic:
        try:
            from droplab.data import load_fashion_mnist

            train, _ = load_fashion_mnist(download=False)
            return np.ascontiguousarray(train.images.numpy()), train.labels.numpy(), "Fashion-MNIST"
        except Exception as e:  # noqa: BLE001 - any failure falls back to synthetic data
            print(f"(Fashion-MNIST not available: {e}; using synthetic data of the same shape)")
    rng = np.random.default_rng(0)
    X = rng.uniform(0, 1, size=(60_000, 784)).astype(np.float32)
    return X, rng.integers(0, 10, size=60_000), "synthetic"


def initial_weights():
    from droplab import scratch

    layers = [
        scratch.Linear(784, HIDDEN, rng=1),
        scratch.Linear(HIDDEN, HIDDEN, rng=2),
        scratch.Linear(HIDDEN, 10, rng=3),
    ]
    return [(layer.weight.data, layer.bias.data) for layer in layers]


def scratch_epoch_fn(weights, seeded: bool):
    from droplab import scratch

    def drop(p, seed):
        return scratch.Dropout(p, seed=seed) if seeded else scratch.Dropout(p, rng=seed)

    net = scratch.Sequential(
        scratch.Linear(784, HIDDEN), scratch.ReLU(), drop(P1, 11),
        scratch.Linear(HIDDEN, HIDDEN), scratch.ReLU(), drop(P2, 12),
        scratch.Linear(HIDDEN, 10),
    )  # fmt: skip
    for layer, (w, b) in zip([net[0], net[3], net[6]], weights):
        layer.weight.data[...] = w
        layer.bias.data[...] = b
    loss_fn, opt = scratch.CrossEntropyLoss(), scratch.optim.SGD(net.parameters(), lr=LR)

    def run(X, y, order):
        total = 0.0
        for i in range(0, len(order), BATCH):
            idx = order[i : i + BATCH]
            xb, yb = X[idx], y[idx]
            loss = loss_fn(net(xb), yb)
            opt.zero_grad()
            net.backward(loss_fn.backward(), input_grad=False)
            opt.step()
            total += float(loss)
        return total

    return run


def torch_epoch_fn(weights, dropout: str):
    import torch
    from torch import nn

    if dropout == "droplab":
        from droplab import Dropout

        d1, d2 = Dropout(P1, seed=11), Dropout(P2, seed=12)
    else:
        d1, d2 = nn.Dropout(P1), nn.Dropout(P2)
    net = nn.Sequential(
        nn.Linear(784, HIDDEN),
        nn.ReLU(),
        d1,
        nn.Linear(HIDDEN, HIDDEN),
        nn.ReLU(),
        d2,
        nn.Linear(HIDDEN, 10),
    )
    with torch.no_grad():
        for layer, (w, b) in zip([net[0], net[3], net[6]], weights):
            layer.weight.copy_(torch.from_numpy(w))
            layer.bias.copy_(torch.from_numpy(b))
    loss_fn, opt = nn.CrossEntropyLoss(), torch.optim.SGD(net.parameters(), lr=LR)

    def run(X, y, order):
        X, y = torch.from_numpy(X), torch.from_numpy(y)
        total = 0.0
        for i in range(0, len(order), BATCH):
            idx = torch.from_numpy(order[i : i + BATCH])
            xb, yb = X[idx], y[idx]
            loss = loss_fn(net(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item()
        return total

    return run


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--repeats", type=int, default=3, help="timed epochs per engine (median)")
    ap.add_argument(
        "--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)"
    )
    ap.add_argument("--synthetic", action="store_true", help="random data instead of Fashion-MNIST")
    args = ap.parse_args(argv)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()  # re-applied before each row: a numba kernel may change it
    X, y, source = load_data(args.synthetic)
    y = y.astype(np.int64)
    weights = initial_weights()
    engines = [
        ("torch, nn.Dropout", lambda: torch_epoch_fn(weights, "torch")),
        ("torch, droplab.Dropout(seed)", lambda: torch_epoch_fn(weights, "droplab")),
        ("numpy engine, seeded masks", lambda: scratch_epoch_fn(weights, seeded=True)),
        ("numpy engine, Generator masks", lambda: scratch_epoch_fn(weights, seeded=False)),
    ]
    rng = np.random.default_rng(0)
    orders = [rng.permutation(len(y)) for _ in range(args.repeats)]
    times: dict[str, list[float]] = {}
    losses: dict[str, float] = {}
    for name, make in engines:
        torch.set_num_threads(threads)
        try:
            run = make()
        except Exception as e:  # noqa: BLE001 - a missing optional engine is a skipped row
            print(f"skipping {name}: {e}")
            continue
        run(X, y, orders[0][: 5 * BATCH])  # warm-up: allocator, BLAS threads, first-call paths
        times[name] = []
        for order in orders:
            watch = Stopwatch()
            total = run(X, y, order)
            times[name].append(watch.seconds())
        losses[name] = total / -(-len(y) // BATCH)

    ref = statistics.median(times["torch, nn.Dropout"])
    print(
        f"\nOne epoch, MLP 784-{HIDDEN}-{HIDDEN}-10, dropout {P1}/{P2}, SGD lr {LR}, batch {BATCH}, "
        f"{source} ({len(y)} images, {-(-len(y) // BATCH)} steps)"
    )
    print(
        f"numpy {np.__version__}, torch {torch.__version__}, torch threads {threads}, "
        f"cpus {os.cpu_count()}, median of {args.repeats}\n"
    )
    print(f"{'engine':<32} {'epoch (s)':>10} {'best (s)':>10} {'vs torch':>9} {'mean loss':>10}")
    print("-" * 75)
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"{name:<32} {med:>10.3f} {min(ts):>10.3f} {med / ref:>8.2f}x {losses[name]:>10.4f}")
    worst = max(statistics.median(ts) / ref for n, ts in times.items() if n.startswith("numpy"))
    print(
        f"\nnumpy engine / torch: {worst:.2f}x (target <= 1.5x): {'OK' if worst <= 1.5 else 'SLOWER'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
