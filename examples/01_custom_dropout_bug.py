"""Section 1 of `droplab tour`: the tutorial's CustomDropout scales twice.

It divides by 1 - p in training and multiplies by 1 - p at eval: run on torch.ones(5, 5) in both
modes, droplab.check_scaling flags it (E[train] / eval = 1 / (1 - p) = 2), and the corrected
layers (droplab.Dropout inverted and classic, torch.nn.Dropout) pass; the NumPy engine's
seeded Dropout draws the same masks as droplab's torch layer.

Usage: python examples/01_custom_dropout_bug.py; exit status 1 if a check fails. The code,
commented, is src/droplab/tour/sections/s01_custom_dropout.py (inside the package, so that
`droplab tour` runs it from an installed droplab).
"""

import sys

from droplab.__main__ import main
from droplab.tour.sections.s01_custom_dropout import run  # noqa: F401  run() -> list[Check]

if __name__ == "__main__":
    sys.exit(main(["tour", "1", *sys.argv[1:]]))
