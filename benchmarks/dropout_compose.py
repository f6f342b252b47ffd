"""Issue 18's costs, measured interleaved in one run (ratios, one thread):

1. eager: ``droplab.dropout`` and a seeded ``droplab.Dropout`` now vs at ``--base`` (the
   functional, layers and fast-kernel modules of that commit, loaded from git into this process),
   per call, without and with a gradient;
2. compiled: one training step of a small MLP with ``torch.nn.Dropout`` vs ``droplab.Dropout``
   (unseeded and seeded), eager and under ``torch.compile`` (inductor).

Run from the repository root: ``PYTHONPATH=src python benchmarks/dropout_compose.py``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
import types

import torch
from torch import nn

import droplab
from droplab._timer import best_of_each
from droplab.studies.bench import machine_line


def load_old(base: str) -> tuple[types.ModuleType, types.ModuleType]:
    """``droplab.functional`` and ``droplab.layers`` as they were at ``base`` (with that fast.py)."""

    def source(path: str) -> str:
        return subprocess.run(
            ["git", "show", f"{base}:{path}"], capture_output=True, text=True, check=True
        ).stdout

    def module(name: str, path: str, replace: dict[str, str]) -> types.ModuleType:
        text = source(path)
        for old, new in replace.items():
            text = text.replace(old, new)
        mod = types.ModuleType(name)
        sys.modules[name] = mod
        exec(compile(text, f"{base}:{path}", "exec"), mod.__dict__)
        return mod

    # the old fast.py registers droplab:: custom ops; rename them so they cannot clash
    fast = module("old_fast", "src/droplab/kernels/fast.py", {'"droplab::': '"droplab_old::'})
    functional = module(
        "old_functional",
        "src/droplab/functional.py",
        {"from droplab.kernels import fast": "import old_fast as fast"},
    )
    layers = module(
        "old_layers",
        "src/droplab/layers.py",
        {"from droplab import functional as F": "import old_functional as F"},
    )
    assert fast is sys.modules["old_fast"]
    return functional, layers


def interleaved(cases: dict, x, reps: int, calls: int) -> dict[str, float]:
    """Fastest per-call microseconds of each case over the reps (``calls`` calls a timing), the
    cases alternating within every rep (the minimum: the machine is shared, and interference only
    adds time); a warm-up call of each first (kernel load, allocator)."""

    def batch(fn):
        return lambda: [fn(x) for _ in range(calls)]

    best = best_of_each({k: batch(fn) for k, fn in cases.items()}, reps)
    return {k: v / calls * 1e6 for k, v in best.items()}


def eager_section(base: str, reps: int) -> None:
    old_F, old_L = load_old(base)
    print(f"\n1. eager, per call (best of {reps} interleaved reps), new / old ({base})")
    print(f"{'case':44s} {'old us':>9s} {'new us':>9s} {'new/old':>8s}")
    for numel in (4096, 65536, 1 << 20):
        for grad in (False, True):

            def fwd(f, grad=grad):
                if grad:
                    return lambda t: f(t).sum().backward()
                return f

            x = torch.randn(numel, requires_grad=grad)
            old_mod, new_mod = old_L.Dropout(0.5, seed=1), droplab.Dropout(0.5, seed=1)
            pairs = {
                "dropout(x, 0.5)": (
                    fwd(lambda t: old_F.dropout(t, 0.5)),
                    fwd(lambda t: droplab.dropout(t, 0.5)),
                ),
                "Dropout(0.5, seed=1)(x)": (fwd(old_mod), fwd(new_mod)),
            }
            calls = max(5, 2_000_000 // numel)
            for label, (old, new) in pairs.items():
                r = interleaved({"old": old, "new": new}, x, reps, calls)
                case = f"{label} {numel:>8d}{' +bwd' if grad else ''}"
                print(f"{case:44s} {r['old']:9.1f} {r['new']:9.1f} {r['new'] / r['old']:8.2f}")


def mlp(drop) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(784, 512), nn.ReLU(), drop(), nn.Linear(512, 512), nn.ReLU(), drop(),
        nn.Linear(512, 10),
    )  # fmt: skip


def compiled_section(reps: int) -> None:
    print(f"\n2. MLP 784-512-512-10, p=0.5, batch 256, SGD step (best of {reps} interleaved reps)")
    x, y = torch.randn(256, 784), torch.randint(0, 10, (256,))
    kinds = {
        "torch.nn.Dropout": lambda: nn.Dropout(0.5),
        "droplab.Dropout": lambda: droplab.Dropout(0.5),
        "droplab.Dropout(seed=0)": lambda: droplab.Dropout(0.5, seed=0),
    }
    steps = {}
    for name, drop in kinds.items():
        for compiled in (False, True):
            model = mlp(drop)
            opt = torch.optim.SGD(model.parameters(), lr=0.01)
            fwd = torch.compile(model) if compiled else model

            def step(_, fwd=fwd, opt=opt):
                opt.zero_grad(set_to_none=True)
                nn.functional.cross_entropy(fwd(x), y).backward()
                opt.step()

            t0 = time.perf_counter()
            step(None)  # compiles
            if compiled:
                print(f"   compile {name}: {time.perf_counter() - t0:.1f} s")
            steps[f"{name}{' compiled' if compiled else ''}"] = step
    r = interleaved(steps, None, reps, 10)
    ref = {False: r["torch.nn.Dropout"], True: r["torch.nn.Dropout compiled"]}
    print(f"{'model':36s} {'ms/step':>8s} {'/ torch same mode':>18s}")
    for name, us in r.items():
        print(f"{name:36s} {us / 1e3:8.2f} {us / ref['compiled' in name]:18.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--base", default="75b4176", help="the commit to compare the eager path with"
    )
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--skip-compiled", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"machine: {machine_line()}")
    eager_section(args.base, args.reps)
    if not args.skip_compiled:
        compiled_section(args.reps)


if __name__ == "__main__":
    main()
