"""What every tour section shares: the list of checks it fills, the tolerances, and printing.

Tolerances: the NumPy engine against PyTorch must agree to ``1e-6`` in float32 and ``1e-12`` in
float64, relative to the size of the value (``max|a - b| / max(1, max|b|)``). Where the math is
exact (a tutorial's printed number, a mask), the checks ask for exact equality instead.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from rich.markup import escape

from droplab.tour.sections import Check

TOL = {np.dtype(np.float32): 1e-6, np.dtype(np.float64): 1e-12}


def to_numpy(x) -> np.ndarray:
    """A NumPy array from a tensor (detached), an array or a number."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def rel_diff(a, b) -> float:
    """``max|a - b| / max(1, max|b|)`` in float64 (0 for empty arrays, inf for a shape mismatch)."""
    a, b = to_numpy(a).astype(np.float64), to_numpy(b).astype(np.float64)
    if a.shape != b.shape:
        return float("inf")
    if a.size == 0:
        return 0.0
    return float(np.max(np.abs(a - b)) / max(1.0, float(np.max(np.abs(b)))))


def fmt(x, digits: int = 6) -> str:
    """A compact text form of a number, array or tensor."""
    x = to_numpy(x)
    if x.ndim == 0:
        return f"{float(x):.{digits}f}" if x.dtype.kind == "f" else str(x.item())
    return np.array2string(x, precision=digits, suppress_small=True, separator=", ")


class Checks(list):
    """The checks of one section, printed as they are made: ``PASS  name  (detail)``."""

    def check(self, name: str, passed: bool, detail: str = "") -> bool:
        passed = bool(passed)
        self.append(Check(name, passed, detail))
        from rich.console import Console

        tag = "[green]PASS[/]" if passed else "[bold red]FAIL[/]"
        Console(soft_wrap=True, highlight=False).print(
            f"  {tag}  {escape(name)}" + (f"  [dim]({escape(detail)})[/]" if detail else "")
        )
        return passed

    def agree(self, name: str, numpy_value, torch_value, dtype=None) -> bool:
        """NumPy engine vs PyTorch within the tolerance of ``dtype`` (the arrays' own by default)."""
        dtype = np.dtype(dtype or to_numpy(torch_value).dtype)
        err, tol = rel_diff(numpy_value, torch_value), TOL[dtype]
        return self.check(name, err <= tol, f"max rel. diff {err:.1e} <= {tol:.0e}, {dtype}")

    def close(self, name: str, got, want, tol: float) -> bool:
        """``got`` within ``tol`` (relative, as ``rel_diff``) of ``want``."""
        err = rel_diff(got, want)
        values = f"got {fmt(got)}, want {fmt(want)}, " if to_numpy(want).size <= 4 else ""
        return self.check(name, err <= tol, f"{values}diff {err:.1e} <= {tol:.0e}")

    def equal(self, name: str, got, want) -> bool:
        """Exactly equal values (and shapes)."""
        a, b = to_numpy(got), to_numpy(want)
        same = a.shape == b.shape and bool(np.array_equal(a, b))
        return self.check(name, same, "bit for bit" if same else f"got {fmt(a)}, want {fmt(b)}")


def heading(text: str) -> None:
    print(f"\n  {text}")


def show(label: str, value, width: int = 34) -> None:
    """``label  value``, the value's lines indented under the first."""
    width = max(width, len(label) + 2)
    text = value if isinstance(value, str) else fmt(value)
    print(f"    {label:<{width}}" + text.replace("\n", "\n" + " " * (width + 4)))


def side_by_side(rows, headers=("", "PyTorch", "NumPy engine"), width: int = 16) -> None:
    """Rows of ``(label, value, value, ...)`` of numbers as aligned columns (``None``: blank)."""
    label_width = max(len(str(r[0])) for r in (headers, *rows)) + 2
    print("    " + f"{headers[0]:<{label_width}}" + "".join(f"{h:>{width}}" for h in headers[1:]))
    for label, *values in rows:
        print(
            "    "
            + f"{label:<{label_width}}"
            + "".join(f"{'' if v is None else fmt(v, 10):>{width}}" for v in values)
        )


def plot_lines(path: Path, title: str, xlabel: str, ylabel: str, series, *, logy=False) -> Path:
    """Write a line plot: ``series`` is a list of ``(label, x, y, style dict)``. matplotlib (Agg)
    is imported here, so that the tour runs without it when no plots are asked for."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for label, x, y, style in series:
        ax.plot(x, y, label=label, **style)
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    if logy:
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"    plot written: {path}")
    return path
