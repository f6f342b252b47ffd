"""Section 4 of `droplab tour`: the loss examples with the tutorial's tensors.

Cross-entropy (one-hot and class-index targets), BCE, L1, MSE and smooth L1: the formula by hand,
torch.nn and the NumPy engine, values and gradients, float32 and float64.

Usage: python examples/04_losses.py; exit status 1 if a check fails. The code,
commented, is src/droplab/tour/sections/s04_losses.py (inside the package, so that
`droplab tour` runs it from an installed droplab).
"""

import sys

from droplab.__main__ import main
from droplab.tour.sections.s04_losses import run  # noqa: F401  run() -> list[Check]

if __name__ == "__main__":
    sys.exit(main(["tour", "4", *sys.argv[1:]]))
