"""Section 7 of `droplab tour`: the learning-rate schedules, lr 0.1 over 200 epochs.

StepLR(50, 0.5), MultiStepLR([50, 125, 160], 0.5), ExponentialLR(0.95): torch's and the NumPy
engine's curves are the same floats. `--plots DIR` writes them (lr_schedules.png).

Usage: python examples/07_lr_schedules.py [--plots DIR]; exit status 1 if a check fails. The code,
commented, is src/droplab/tour/sections/s07_lr_schedules.py (inside the package, so that
`droplab tour` runs it from an installed droplab).
"""

import sys

from droplab.__main__ import main
from droplab.tour.sections.s07_lr_schedules import run  # noqa: F401  run() -> list[Check]

if __name__ == "__main__":
    sys.exit(main(["tour", "7", *sys.argv[1:]]))
