"""Benchmark droplab's fast CPU dropout against PyTorch's, measured in the same run.

For each size, dtype, ``p`` and direction (forward, forward in-place, backward,
forward+backward) the table gives M elements/s for torch eager dropout, ``torch.compile``d torch
dropout, droplab's fused kernel (``droplab.kernels.fast``), and two tensor copies: ``y.copy_(x)``
into a preallocated tensor (the memory-bandwidth limit) and ``x.clone()``, which like every
out-of-place dropout here allocates its output and so pays the page faults of fresh memory
(``THP_MEM_ALLOC_ENABLE=1`` makes PyTorch use huge pages and cuts that cost for all methods
alike). The in-place rows compare ``F.dropout(x, p, True, inplace=True)`` with
``fast_dropout(x, ..., inplace=True)``: both write into ``x``; torch still draws a full mask
tensor, droplab allocates nothing (no compile column there). Ratios are against torch eager.

Before the table: the machine (CPU model, torch and numba threads), the first-call times of the
numba kernels and of the eager and compiled entry points, and a per-call overhead table
(``--overhead`` prints only that): microseconds per forward call on 1K, 4K and 64K elements for
``F.dropout`` and ``droplab.dropout`` with each backend, from which
``droplab.kernels.fast.AUTO_MIN_NUMEL`` is set. After it: the bytes each method saves for
backward (``torch.autograd.graph.saved_tensors_hooks``), and a training step of an
``nn.TransformerEncoder`` (dropout 0.1) with torch's dropout modules vs droplab's.

Each number is the best of ``--repeat`` timed calls, methods interleaved, so that a shared
machine's noise hits them alike; ratios only compare numbers from one run.
"""

from __future__ import annotations

import argparse

from droplab.cli.options import list_of, positive_int, probability
from droplab.studies.bench import (
    SIZES,
    compiled_dropout,
    first_call_seconds,
    machine_line,
    overhead_us,
    saved_bytes,
    throughput,
    transformer_step,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a small subset: 64K and 16M float32, p=0.1, short end-to-end run",
    )
    parser.add_argument(
        "--sizes",
        type=list_of(str),
        default=None,
        help=f"comma-separated sizes from {', '.join(SIZES)} (default: all)",
    )
    parser.add_argument(
        "--dtypes",
        type=list_of(str),
        default=None,
        help="comma-separated dtypes: float32, bfloat16, float16, float64 "
        "(default: float32,bfloat16)",
    )
    parser.add_argument(
        "--p",
        type=list_of(probability),
        default=None,
        help="comma-separated drop probabilities (default: 0.1,0.5)",
    )
    parser.add_argument(
        "--repeat",
        type=positive_int,
        default=None,
        help="timed calls per cell; the best is kept (default: 7, quick: 5)",
    )
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile column")
    parser.add_argument("--no-e2e", action="store_true", help="skip the TransformerEncoder step")
    parser.add_argument(
        "--overhead",
        action="store_true",
        help="only the per-call overhead table: microseconds per call on 1K, 4K and 64K float32 "
        "elements, torch eager vs droplab (auto, torch, fast)",
    )
    parser.add_argument(
        "--json", metavar="PATH", default=None, help="also write the measurements to this JSON file"
    )


# ----------------------------------------------------------------------------------------------
# measurements
# ----------------------------------------------------------------------------------------------


def _table(title: str, columns: tuple[str, ...]):
    from rich.table import Table

    table = Table(title=title)
    for col in columns:
        table.add_column(col, justify="right")
    return table


def _overhead_table(rows):
    from droplab.kernels.fast import AUTO_MIN_NUMEL

    table = _table(
        f"per-call overhead, us per forward call, float32, p=0.1 (auto takes the fast kernel "
        f"from {AUTO_MIN_NUMEL} elements)",
        ("size", "requires_grad", "torch eager", "droplab auto", "droplab torch", "droplab fast"),
    )
    for r in rows:
        us = r["us_per_call"]
        table.add_row(
            r["size"],
            str(r["requires_grad"]),
            *(
                f"{us[k]:.1f}"
                for k in ("torch eager", "droplab auto", "droplab torch", "droplab fast")
            ),
        )
    return table


def _choices(args: argparse.Namespace) -> tuple[list[str], dict, list[float], int]:
    """The sizes, dtypes, ``p`` values and repeats asked for (``--quick``: a small subset);
    an unknown size or dtype, or ``p >= 1``, is a ``UsageError`` (exit 2)."""
    import torch

    from droplab.errors import UsageError

    quick = args.quick
    sizes = args.sizes or (["64K", "16M"] if quick else list(SIZES))
    unknown = [s for s in sizes if s not in SIZES]
    if unknown:
        raise UsageError(f"--sizes: unknown size {unknown[0]!r} (choose from {', '.join(SIZES)})")
    dtypes = {}
    for name in args.dtypes or (["float32"] if quick else ["float32", "bfloat16"]):
        dt = getattr(torch, name, None)
        if dt not in (torch.float32, torch.bfloat16, torch.float16, torch.float64):
            raise UsageError(
                f"--dtypes: unknown dtype {name!r} "
                "(choose from float32, bfloat16, float16, float64)"
            )
        dtypes[name] = dt
    ps = args.p or ([0.1] if quick else [0.1, 0.5])
    if any(p >= 1 for p in ps):
        raise UsageError("--p: each p must be in [0, 1)")
    return sizes, dtypes, ps, args.repeat or (5 if quick else 7)


def _throughput_table(results: list[dict]):
    names = {n: name for name, n in SIZES.items()}
    table = _table(
        "dropout throughput, M elements/s (x = ratio to torch eager, same run)",
        ("size", "dtype", "p", "direction", "torch eager", "torch.compile", "droplab fast",
         "copy_", "clone", "fast / clone"),
    )  # fmt: skip
    for r in results:
        rate = r["M_per_s"]
        base = rate["torch"]

        def cell(k, rate=rate, base=base):
            return f"{rate[k]:,.0f} ({rate[k] / base:.1f}x)" if k in rate else "-"

        table.add_row(
            names[r["size"]],
            r["dtype"],
            f"{r['p']:g}",
            r["direction"],
            f"{base:,.0f}",
            cell("compile"),
            cell("fast"),
            f"{rate['copy']:,.0f}",
            f"{rate['clone']:,.0f}",
            f"{rate['fast'] / rate['clone']:.0%}",
        )
    return table


def _transformer(console, quick: bool) -> dict:
    cfg = (
        dict(steps=3, batch=8, seq=64, d_model=128, layers=2)
        if quick
        else dict(steps=5, batch=16, seq=128, d_model=256, layers=4)
    )
    with console.status("TransformerEncoder training steps"):
        e2e = transformer_step(**cfg)
    console.print(
        f"TransformerEncoder training step ({e2e['shape']}, dropout 0.1, best of "
        f"{cfg['steps']}): torch dropout {e2e['torch'] * 1e3:.1f} ms, droplab fast "
        f"{e2e['fast'] * 1e3:.1f} ms ({e2e['torch'] / e2e['fast']:.2f}x)"
    )
    return e2e


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from droplab._io import atomic_write_json

    console = Console()
    if not console.is_terminal:  # piped or in a file: room for the whole table
        console = Console(width=max(console.width, 150))
    sizes, dtypes, ps, repeat = _choices(args)
    use_compile = not args.no_compile

    first = first_call_seconds(compiled=use_compile and not args.overhead)
    console.print(f"[bold]machine[/bold]: {machine_line()}")
    console.print("first calls: " + ", ".join(f"{k} {v * 1e3:.0f} ms" for k, v in first.items()))
    with console.status("measuring per-call overhead"):
        overhead = overhead_us(calls=100 if args.quick else 200)
    console.print(_overhead_table(overhead))
    record = {"machine": machine_line(), "first_call_s": first, "overhead_us": overhead}
    if not args.overhead:
        with console.status("measuring") as status:
            results = throughput(
                sizes,
                dtypes,
                ps,
                repeat,
                compiled=compiled_dropout() if use_compile else None,
                on_cell=lambda cell: status.update(f"measuring {cell}"),
            )
        console.print(_throughput_table(results))
        sb = saved_bytes()
        console.print(
            "saved for backward, bytes per float32 element: "
            + ", ".join(f"{k} {v:g}" for k, v in sb.items())
        )
        e2e = None if args.no_e2e else _transformer(console, args.quick)
        record.update(results=results, saved_bytes_per_element=sb, transformer_step_s=e2e)
    if args.json:
        atomic_write_json(args.json, record)
    return 0
