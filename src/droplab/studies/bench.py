"""The kernel benchmark's measurements: droplab's fast CPU dropout against PyTorch's, timed in
the same run (methods interleaved), per-call overheads, bytes saved for backward, and a
transformer training step. ``droplab bench`` (``droplab.cli.bench``) prints and saves them.
"""

from __future__ import annotations

import platform

from droplab._timer import Stopwatch, best_of_each

SIZES = {"64K": 1 << 16, "1M": 1 << 20, "16M": 1 << 24, "64M": 1 << 26}
DIRECTIONS = ("forward", "forward in-place", "backward", "forward+backward")
METHODS = ("torch", "compile", "fast", "copy", "clone")
OVERHEAD_SIZES = {"1K": 1 << 10, "4K": 1 << 12, "64K": 1 << 16}


def machine_line() -> str:
    """The machine a benchmark ran on, in one line: CPU model and cores, Python, torch and its
    threads, numba and its threads (or that it is missing). Every benchmark prints it."""
    import os

    import torch

    model = platform.processor() or platform.machine() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        import numba

        fast = (
            f"numba {numba.__version__} threads {numba.get_num_threads()} "
            f"({numba.config.THREADING_LAYER} layer)"
        )
    except ImportError:
        fast = "no numba"
    return (
        f"{model}, {os.cpu_count()} cores; Python {platform.python_version()}; "
        f"torch {torch.__version__} threads {torch.get_num_threads()}; {fast}"
    )


def first_call_seconds(compiled: bool = True) -> dict[str, float]:
    """Seconds to import the numba kernels, run each once (loading it from numba's disk cache, or
    compiling it when the cache is cold), make the first eager ``fast_dropout`` call (through an
    ``autograd.Function``) and, with ``compiled``, the first call of ``torch.compile``d
    ``droplab.dropout`` (tracing and code generation; eager code never pays it)."""
    import numpy as np
    import torch

    watch = Stopwatch()
    from droplab.kernels import cpu
    from droplab.kernels.fast import fast_dropout

    out = {"import numba kernels": watch.restart()}
    calls = {
        "float32": lambda n: cpu.dropout_cpu(np.ones(n, np.float32), 0.5, 2.0, 1),
        "float64": lambda n: cpu.dropout_cpu(np.ones(n, np.float64), 0.5, 2.0, 1),
        "bfloat16": lambda n: cpu.dropout_bf16_cpu(np.ones(n, np.uint16), 0.5, 2.0, 1),
    }
    for name, call in calls.items():
        for n, kind in ((100, "serial"), (1 << 16, "parallel")):
            watch.restart()
            call(n)
            out[f"{name} {kind}"] = watch.restart()
    fast_dropout(torch.ones(1 << 16, requires_grad=True), 0.5, 2.0, 1).sum().backward()
    out["first eager fast_dropout fwd+bwd"] = watch.restart()
    if compiled:
        import droplab

        torch.compile(lambda t: droplab.dropout(t, 0.5), fullgraph=True)(torch.ones(1 << 16))
        out["first torch.compile'd droplab.dropout call"] = watch.restart()
    return out


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


def compiled_dropout():
    """``F.dropout`` under ``torch.compile`` (dynamic shapes), for the compile column."""
    import torch
    import torch.nn.functional as F

    # the backward column reruns one graph's backward (retain_graph=True), which AOTAutograd's
    # buffer donation forbids
    torch._functorch.config.donated_buffer = False
    return torch.compile(lambda t, p: F.dropout(t, p, True), dynamic=True)


def throughput(
    sizes: list[str],
    dtypes: dict,
    ps: list[float],
    repeat: int,
    *,
    compiled=None,
    on_cell=lambda cell: None,
) -> list[dict]:
    """M elements/s of every method, per size name, dtype, ``p`` and direction: one dict each
    (``size``, ``dtype``, ``p``, ``direction``, ``M_per_s``: method -> rate). ``compiled``:
    ``compiled_dropout()`` for the compile column; ``on_cell(text)`` is told each cell."""
    results = []
    for dname, dtype in dtypes.items():
        for p in ps:
            for sname in sizes:
                n = SIZES[sname]
                for direction in DIRECTIONS:
                    on_cell(f"{sname} {dname} p={p} {direction}")
                    fns = _cell_functions(n, dtype, p, direction, compiled, compiled is not None)
                    best = best_of_each(fns, repeat if n < 1 << 26 else max(2, repeat // 2))
                    del fns
                    rate = {k: n / v / 1e6 for k, v in best.items()}
                    results.append(
                        {"size": n, "dtype": dname, "p": p, "direction": direction, "M_per_s": rate}
                    )
    return results


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
            best = best_of_each(fns, repeat)
            rows.append(
                {
                    "size": sname,
                    "numel": n,
                    "requires_grad": grad,
                    "us_per_call": {m: v / k * 1e6 for m, v in best.items()},
                }
            )
    return rows


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
    }


def transformer_step(steps: int, batch: int, seq: int, d_model: int, layers: int) -> dict:
    """Seconds per training step of a TransformerEncoder, torch dropout vs droplab fast."""
    import warnings

    import torch

    from droplab.tools import replace_dropout

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
        models["fast"] = replace_dropout(build(), backend="fast", seed=0)
    steppers = {}
    for name, model in models.items():
        model.train()
        opt = torch.optim.SGD(model.parameters(), lr=1e-3)

        def step(model=model, opt=opt):
            opt.zero_grad(set_to_none=True)
            model(x).square().mean().backward()
            opt.step()

        steppers[name] = step
    best = best_of_each(steppers, steps)
    return {
        "shape": f"batch {batch} x seq {seq} x d_model {d_model}, {layers} layers",
        **{k: v for k, v in best.items()},
    }


# ----------------------------------------------------------------------------------------------
# the command
# ----------------------------------------------------------------------------------------------
