"""Vectorized Monte-Carlo dropout sampling against a Python loop of T forward passes.

    python benchmarks/mc_vectorized.py [--threads 1] [--T 50]

Same run, same model (the Fashion-MNIST MLP 784-256-256-10, dropout 0.5/0.5, untrained: speed
does not depend on the weights), best of 5 in CPU time (``time.process_time``, robust on a shared
machine); the speed-up is loop / vectorized. Target: >= 3x.
"""

from __future__ import annotations

import argparse
import time

import torch

from droplab._timer import best_of
from droplab.mc import mc_predict
from droplab.models import mlp
from droplab.studies.mc_fashion import loop_sample


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--T", type=int, default=50)
    ap.add_argument("--sizes", default="1,8,32,128,1024,10000")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    droplab_net = mlp((256, 256), (0.5, 0.5)).eval()
    torch_net = torch.nn.Sequential(
        *[torch.nn.Dropout(m.p) if type(m).__name__ == "Dropout" else m for m in droplab_net]
    ).eval()
    x = torch.rand(max(int(s) for s in args.sizes.split(",")), 784)
    print(f"T={args.T}, {args.threads} thread(s), CPU ms (best of 5)")
    print(f"{'dropout':>8} {'N':>6} {'vectorized':>11} {'loop':>9} {'speed-up':>9}")
    for name, net in (("droplab", droplab_net), ("torch", torch_net)):
        for n in (int(s) for s in args.sizes.split(",")):
            xb = x[:n]
            vec = best_of(
                lambda xb=xb, net=net: mc_predict(net, xb, args.T, progress=False),
                clock=time.process_time,
            )
            loop = best_of(
                lambda xb=xb, net=net: loop_sample(net, xb, args.T), clock=time.process_time
            )
            print(f"{name:>8} {n:>6} {vec * 1e3:>11.1f} {loop * 1e3:>9.1f} {loop / vec:>8.1f}x")


if __name__ == "__main__":
    main()
