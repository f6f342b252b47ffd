"""The kernel benchmark's measurements: droplab's fast CPU dropout against PyTorch's, timed in
the same run (methods interleaved), per-call overheads, bytes saved for backward, and a
transformer training step. ``droplab bench`` (``droplab.cli.bench``) prints and saves them.
"""

from __future__ import annotations

import platform
import time

SIZES = {"64K": 1 << 16, "1M": 1 << 20, "16M": 1 << 24, "64M": 1 << 26}
DIRECTIONS = ("forward", "forward in-place", "backward", "forward+backward")
METHODS = ("torch", "compile", "fast", "copy", "clone")
OVERHEAD_SIZES = {"1K": 1 << 10, "4K": 1 << 12, "64K": 1 << 16}


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
