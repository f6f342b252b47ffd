"""Where the attention-dropout overhead of a training step goes: the attention op alone.

    python benchmarks/attention_paths.py [--rounds 15] [--layers 4]

The attention of the 4-layer models of benchmarks/models_overhead.py, (B, heads, L, d) =
(8, 4, 128, 64), forward and backward, best CPU time of interleaved rounds, 1 thread:

- torch with ``dropout_p = 0`` on its fused (flash) CPU kernel, and on the math path;
- torch with ``dropout_p = 0.1``: the fused CPU kernel takes no dropout, so this is the math path
  plus a Bernoulli mask of the (B, heads, L, L) probabilities, in forward and backward;
- ``droplab.attention.scaled_dot_product_attention`` with ``dropout_p = 0.1``: the same math
  with droplab's counter-based mask.

The overhead of dropout in attention is each of the last two minus the first. Both leave the
fused kernel, so a whole-step overhead ratio below what this prints needs a fused attention
kernel with the mask drawn inside it, which neither library has on the CPU.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from droplab._timer import best_of_each
from droplab.attention import scaled_dot_product_attention
from droplab.studies.bench import machine_line

SHAPE = (8, 4, 128, 64)  # (B, heads, L, d)


def _attention(fn, layers: int):
    qkv = [[torch.randn(SHAPE, requires_grad=True) for _ in range(3)] for _ in range(layers)]

    def run():
        for q, k, v in qkv:
            fn(q, k, v).sum().backward()

    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--layers", type=int, default=4)
    args = ap.parse_args()
    torch.set_num_threads(1)
    print(machine_line())

    def torch_sdpa(backend, p, causal):
        def fn(q, k, v):
            with sdpa_kernel(backend):
                return F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=causal)

        return fn

    for causal in (False, True):
        fns = {
            "torch p=0, fused": torch_sdpa(SDPBackend.FLASH_ATTENTION, 0.0, causal),
            "torch p=0, math": torch_sdpa(SDPBackend.MATH, 0.0, causal),
            "torch p=0.1": torch_sdpa([SDPBackend.FLASH_ATTENTION, SDPBackend.MATH], 0.1, causal),
            "droplab p=0.1": lambda q, k, v, c=causal: scaled_dot_product_attention(
                q, k, v, dropout_p=0.1, is_causal=c, seed=1
            ),
        }
        runs = {name: _attention(fn, args.layers) for name, fn in fns.items()}
        best = best_of_each(runs, args.rounds, clock=time.process_time)
        base = best["torch p=0, fused"]
        print(f"\n{args.layers} layers of {SHAPE}, causal={causal}, fwd+bwd, CPU ms:")
        for name, seconds in best.items():
            print(f"  {name:<18} {seconds * 1e3:7.1f}  (+{(seconds - base) * 1e3:5.1f})")
        over_t, over_d = best["torch p=0.1"] - base, best["droplab p=0.1"] - base
        print(f"  dropout overhead in attention: droplab / torch = {over_d / over_t:.2f}")


if __name__ == "__main__":
    main()
