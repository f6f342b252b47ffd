"""Run every example of the tutorials, print the values from PyTorch and from droplab's NumPy
engine side by side, and check each against its oracle: PASS or FAIL, a summary table at the end.

Sections (by number or name; all of them by default):
  1 custom-dropout   the tutorial's CustomDropout scales twice; check_scaling flags it
  2 keep-prob        keep_prob walk-through: 0.525 -> 0.15 -> 0.3, and the mean over masks
  3 d2l-dropout      d2l's dropout(X, p) on arange(16).reshape(2, 8), p = 0, 0.5, 1
  4 losses           cross-entropy, BCE, L1, MSE, smooth L1 with the tutorial's tensors
  5 backprop         gradients of the 2-2-2 network: autograd, NumPy engine, by hand
  6 optimizers       SGD momentum, Adagrad, RMSprop, Adam on w^2/2 (plot: optimizers.png)
  7 lr-schedules     StepLR, MultiStepLR, ExponentialLR over 200 epochs (plot: lr_schedules.png)
  8 nn-dropout       nn.Dropout(p=0.4) after Linear(4, 5): the zeros and the 1/0.6 scale
  9 l2-vs-lr         L2 = weight decay, and why a smaller learning rate is not L2

Oracles: the tutorial's printed numbers where the math is exact; NumPy engine vs PyTorch to
1e-6 (float32) / 1e-12 (float64); statistics within 6 binomial standard errors.
Exit status: 0 when every check passes, 1 when any fails.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from droplab.tour.sections import SECTIONS, Section, find_section


def _section(text: str) -> Section:
    try:
        return find_section(text)
    except KeyError:
        names = ", ".join(f"{s.number}/{s.key}" for s in SECTIONS)
        raise argparse.ArgumentTypeError(
            f"unknown section {text!r} (choose from {names})"
        ) from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "sections",
        nargs="*",
        type=_section,
        metavar="SECTION",
        help="sections to run, by number (6) or name (optimizers); default: all",
    )
    parser.add_argument(
        "--plots",
        type=Path,
        metavar="DIR",
        help="write the plots (optimizer trajectories, LR schedules) as PNGs into DIR",
    )


def run(args: argparse.Namespace) -> int:
    from droplab.tour import run_sections

    return run_sections(args.sections, args.plots)
