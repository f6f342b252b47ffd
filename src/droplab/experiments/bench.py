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
import platform
import time

from droplab._cli import list_of, positive_int, probability

SIZES = {"64K": 1 << 16, "1M": 1 << 20, "16M": 1 << 24, "64M": 1 << 26}
DIRECTIONS = ("forward", "forward in-place", "backward", "forward+backward")
METHODS = ("torch", "compile", "fast", "copy", "clone")
OVERHEAD_SIZES = {"1K": 1 << 10, "4K": 1 << 12, "64K": 1 << 16}


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


def machine_line() -> str:
    import numba
    import torch

    model = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return (
        f"{model}; torch {torch.__version__} threads {torch.get_num_threads()}; "
        f"numba {numba.__version__} threads {numba.get_num_threads()} "
        f"({numba.config.THREADING_LAYER} layer)"
    )


def first_call_seconds(custom_op: bool = True) -> dict[str, float]:
    """Seconds to import the numba kernels, run each once (loading it from numba's disk cache, or
    compiling it when the cache is cold), make the first eager ``fast_dropout`` call (through an
    ``autograd.Function``) and, with ``custom_op``, the first call of the ``droplab::dropout``
    custom op that ``torch.compile`` uses (which imports ``torch._dynamo``, as every
    ``torch.library.custom_op`` does on its first call; eager code never pays it)."""
    import numpy as np
    import torch

    t0 = time.perf_counter()
    from droplab.kernels import cpu
    from droplab.kernels.fast import fast_dropout

    out = {"import numba kernels": time.perf_counter() - t0}
    calls = {
        "float32": lambda n: cpu.dropout_cpu(np.ones(n, np.float32), 0.5, 2.0, 1),
        "float64": lambda n: cpu.dropout_cpu(np.ones(n, np.float64), 0.5, 2.0, 1),
        "bfloat16": lambda n: cpu.dropout_bf16_cpu(np.ones(n, np.uint16), 0.5, 2.0, 1),
        "packed": lambda n: cpu.dropout_packed_cpu(np.ones(n, np.float32), 0.5, 2.0, 1),
    }
    for name, call in calls.items():
        for n, kind in ((100, "serial"), (1 << 16, "parallel")):
            if name == "packed" and kind == "serial":
                continue
            t0 = time.perf_counter()
            call(n)
            out[f"{name} {kind}"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    fast_dropout(torch.ones(1 << 16, requires_grad=True), 0.5, 2.0, 1).sum().backward()
    out["first eager fast_dropout fwd+bwd"] = time.perf_counter() - t0
    if custom_op:
        t0 = time.perf_counter()
        torch.ops.droplab.dropout(torch.ones(1 << 16), 0.5, 2.0, 1)
        out["first custom-op call (torch.compile path)"] = time.perf_counter() - t0
    return out


def _best(fns: dict, repeat: int) -> dict[str, float]:
    """Best seconds per call of each function, calls interleaved across functions."""
    best = {k: float("inf") for k in fns}
    for f in fns.values():
        f()  # warm-up
    for _ in range(repeat):
        for k, f in fns.items():
            t0 = time.perf_counter()
            f()
            best[k] = min(best[k], time.perf_counter() - t0)
    return best


def _cell_functions(n: int, dtype, p: float, direction: str, compiled, use_compile: bool):
    """One zero-argument callable per method for one cell of the table."""
    import torch
    import torch.nn.functional as F

    from droplab.kernels.fast import fast_dropout

    scale = 1.0 / (1.0 - p)
    x = torch.randn(n, dtype=dtype)
    g = torch.randn(n, dtype=dtype)
    dst = torch.empty_like(x)
    if direction == "forward in-place":
        # x is overwritten again and again: its values drift (zeros, then inf/NaN after a few
        # hundred calls), which does not change the time of a multiply on x86-64
        ops = {
            "torch": lambda t: F.dropout(t, p, True, inplace=True),
            "fast": lambda t: fast_dropout(t, p, scale, 12345, inplace=True),
        }
    else:
        ops = {
            "torch": lambda t: F.dropout(t, p, True),
            "fast": lambda t: fast_dropout(t, p, scale, 12345),
        }
        if use_compile:
            ops["compile"] = lambda t: compiled(t, p)
    fns = {}
    for name, op in ops.items():
        if direction in ("forward", "forward in-place"):
            fns[name] = lambda op=op: op(x)
        elif direction == "backward":
            xg = x.detach().requires_grad_(True)
            y = op(xg)
            fns[name] = lambda y=y, xg=xg: torch.autograd.grad(y, xg, g, retain_graph=True)
        else:
            xg = x.detach().requires_grad_(True)
            fns[name] = lambda op=op, xg=xg: torch.autograd.grad(op(xg), xg, g)
    fns["copy"] = lambda: dst.copy_(x)  # into a preallocated tensor: the memory-bandwidth limit
    fns["clone"] = lambda: x.clone()  # allocates its output, as every dropout here does
    return {m: fns[m] for m in METHODS if m in fns}


def overhead_us(calls: int = 200, repeat: int = 5) -> list[dict]:
    """Microseconds per forward call on small float32 tensors (no seed, as in training).

    Methods: ``F.dropout`` (torch eager), ``droplab.dropout`` with ``backend="auto"`` (the
    default), ``"torch"`` and ``"fast"``; each on an input without grad and on one that requires
    grad (the forward then builds the autograd graph). Each number is the best of ``repeat``
    batches of ``calls`` calls (fewer above 1K elements), methods interleaved.
    """
    import torch
    import torch.nn.functional as F

    import droplab

    rows = []
    for sname, n in OVERHEAD_SIZES.items():
        for grad in (False, True):
            x = torch.randn(n, requires_grad=grad)

            k = max(10, calls * 1024 // n)  # fewer calls for larger tensors

            def batch(op, x=x, k=k):
                def run_batch():
                    for _ in range(k):
                        op(x)

                return run_batch

            fns = {
                "torch eager": batch(lambda t: F.dropout(t, 0.1, True)),
                "droplab auto": batch(lambda t: droplab.dropout(t, 0.1)),
                "droplab torch": batch(lambda t: droplab.dropout(t, 0.1, backend="torch")),
                "droplab fast": batch(lambda t: droplab.dropout(t, 0.1, backend="fast")),
            }
            best = _best(fns, repeat)
            rows.append(
                {
                    "size": sname,
                    "numel": n,
                    "requires_grad": grad,
                    "us_per_call": {m: v / k * 1e6 for m, v in best.items()},
                }
            )
    return rows


def _overhead_table(rows):
    from rich.table import Table

    from droplab.kernels.fast import AUTO_MIN_NUMEL

    table = Table(
        title=f"per-call overhead, us per forward call, float32, p=0.1 (auto takes the fast "
        f"kernel from {AUTO_MIN_NUMEL} elements)"
    )
    for col in (
        "size",
        "requires_grad",
        "torch eager",
        "droplab auto",
        "droplab torch",
        "droplab fast",
    ):
        table.add_column(col, justify="right")
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


def saved_bytes(n: int = 1 << 20) -> dict[str, float]:
    """Bytes saved for backward per element by each method (float32 input)."""
    import torch
    import torch.nn.functional as F

    from droplab.kernels.fast import fast_dropout

    def measure(op) -> float:
        total = 0

        def pack(t):
            nonlocal total
            total += t.numel() * t.element_size()
            return t

        x = torch.randn(n, requires_grad=True)
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            op(x)
        return total / n

    return {
        "torch": measure(lambda t: F.dropout(t, 0.5, True)),
        "fast": measure(lambda t: fast_dropout(t, 0.5, 2.0, 1)),
        "fast packed": measure(lambda t: fast_dropout(t, 0.5, 2.0, 1, packed=True)),
    }


def _swap_dropout(model):
    """Swap torch.nn.Dropout modules for droplab's fast ones (replace_dropout if available)."""
    try:
        from droplab.tools import replace_dropout

        return replace_dropout(model, backend="fast", seed=0)
    except ImportError:
        import torch

        from droplab.kernels.fast import fast_dropout

        class _FastDropout(torch.nn.Module):
            def __init__(self, p):
                super().__init__()
                self.p, self.step = p, 0

            def forward(self, x):
                if not self.training or self.p == 0:
                    return x
                self.step += 1
                return fast_dropout(x, self.p, 1 / (1 - self.p), self.step)

        for module in list(model.modules()):
            for name, child in list(module.named_children()):
                if type(child) is torch.nn.Dropout:
                    setattr(module, name, _FastDropout(child.p))
        return model


def transformer_step(steps: int, batch: int, seq: int, d_model: int, layers: int) -> dict:
    """Seconds per training step of a TransformerEncoder, torch dropout vs droplab fast."""
    import warnings

    import torch

    def build():
        torch.manual_seed(0)
        layer = torch.nn.TransformerEncoderLayer(
            d_model, nhead=8, dim_feedforward=4 * d_model, dropout=0.1, batch_first=True
        )
        return torch.nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)

    x = torch.randn(batch, seq, d_model)
    models = {"torch": build()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the attention dropout it cannot reach
        models["fast"] = _swap_dropout(build())
    steppers = {}
    for name, model in models.items():
        model.train()
        opt = torch.optim.SGD(model.parameters(), lr=1e-3)

        def step(model=model, opt=opt):
            opt.zero_grad(set_to_none=True)
            model(x).square().mean().backward()
            opt.step()

        steppers[name] = step
    best = _best(steppers, steps)
    return {
        "shape": f"batch {batch} x seq {seq} x d_model {d_model}, {layers} layers",
        **{k: v for k, v in best.items()},
    }


# ----------------------------------------------------------------------------------------------
# the command
# ----------------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    import torch
    from rich.console import Console
    from rich.table import Table

    from droplab._cli import UsageError

    console = Console()
    if not console.is_terminal:  # piped or in a file: room for the whole table
        console = Console(width=max(console.width, 150))
    quick = args.quick
    sizes = args.sizes or (["64K", "16M"] if quick else list(SIZES))
    unknown = [s for s in sizes if s not in SIZES]
    if unknown:
        raise UsageError(f"--sizes: unknown size {unknown[0]!r} (choose from {', '.join(SIZES)})")
    dtype_names = args.dtypes or (["float32"] if quick else ["float32", "bfloat16"])
    dtypes = {}
    for name in dtype_names:
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
    repeat = args.repeat or (5 if quick else 7)
    use_compile = not args.no_compile

    first = first_call_seconds(custom_op=use_compile and not args.overhead)
    console.print(f"[bold]machine[/bold]: {machine_line()}")
    console.print("first calls: " + ", ".join(f"{k} {v * 1e3:.0f} ms" for k, v in first.items()))

    with console.status("measuring per-call overhead"):
        overhead = overhead_us(calls=100 if quick else 200)
    console.print(_overhead_table(overhead))
    if args.overhead:
        if args.json:
            from droplab._io import atomic_write_json

            atomic_write_json(
                args.json,
                {"machine": machine_line(), "first_call_s": first, "overhead_us": overhead},
            )
        return 0

    compiled = None
    if use_compile:
        import torch.nn.functional as F

        # the backward column reruns one graph's backward (retain_graph=True), which AOTAutograd's
        # buffer donation forbids
        torch._functorch.config.donated_buffer = False
        compiled = torch.compile(lambda t, p: F.dropout(t, p, True), dynamic=True)

    results = []
    table = Table(title="dropout throughput, M elements/s (x = ratio to torch eager, same run)")
    for col in (
        "size",
        "dtype",
        "p",
        "direction",
        "torch eager",
        "torch.compile",
        "droplab fast",
        "copy_",
        "clone",
        "fast / clone",
    ):
        table.add_column(col, justify="right")
    with console.status("measuring") as status:
        for dname, dtype in dtypes.items():
            for p in ps:
                for sname in sizes:
                    n = SIZES[sname]
                    for direction in DIRECTIONS:
                        status.update(f"measuring {sname} {dname} p={p} {direction}")
                        fns = _cell_functions(n, dtype, p, direction, compiled, use_compile)
                        r = repeat if n < 1 << 26 else max(2, repeat // 2)
                        best = _best(fns, r)
                        rate = {k: n / v / 1e6 for k, v in best.items()}
                        results.append(
                            {
                                "size": n,
                                "dtype": dname,
                                "p": p,
                                "direction": direction,
                                "M_per_s": rate,
                            }
                        )
                        base = rate["torch"]

                        def cell(k, rate=rate, base=base):
                            if k not in rate:
                                return "-"
                            return f"{rate[k]:,.0f} ({rate[k] / base:.1f}x)"

                        table.add_row(
                            sname,
                            dname,
                            f"{p:g}",
                            direction,
                            f"{base:,.0f}",
                            cell("compile"),
                            cell("fast"),
                            f"{rate['copy']:,.0f}",
                            f"{rate['clone']:,.0f}",
                            f"{rate['fast'] / rate['clone']:.0%}",
                        )
                        del fns
    console.print(table)

    sb = saved_bytes()
    console.print(
        "saved for backward, bytes per float32 element: "
        + ", ".join(f"{k} {v:g}" for k, v in sb.items())
    )

    e2e = None
    if not args.no_e2e:
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

    if args.json:
        from droplab._io import atomic_write_json

        atomic_write_json(
            args.json,
            {
                "machine": machine_line(),
                "first_call_s": first,
                "overhead_us": overhead,
                "results": results,
                "saved_bytes_per_element": sb,
                "transformer_step_s": e2e,
            },
        )
    return 0
