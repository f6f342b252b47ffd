"""Section 9 of `droplab tour`: L2 regularization vs a smaller learning rate.

The course's update W - a(dW + lambda/m W) is weight decay; gradient descent with any learning
rate ends at the least-squares weights, with L2 at the ridge weights: a smaller learning rate is
not regularization.

Usage: python examples/09_l2_vs_learning_rate.py; exit status 1 if a check fails. The code,
commented, is src/droplab/tour/sections/s09_l2_vs_lr.py (inside the package, so that
`droplab tour` runs it from an installed droplab).
"""

import sys

from droplab.__main__ import main
from droplab.tour.sections.s09_l2_vs_lr import run  # noqa: F401  run() -> list[Check]

if __name__ == "__main__":
    sys.exit(main(["tour", "9", *sys.argv[1:]]))
