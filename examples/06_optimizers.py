"""Section 6 of `droplab tour`: the optimizers on w^2 / 2 from w = 1, lr 0.01.

SGD with momentum 0.9, Adagrad, RMSprop (alpha 0.9), Adam (betas 0.9, 0.99), two steps each, by
hand, with torch.optim and with the NumPy engine; the tutorial's exponential-average momentum as
SGD's dampening. `--plots DIR` writes the trajectories (optimizers.png).

Usage: python examples/06_optimizers.py [--plots DIR]; exit status 1 if a check fails. The code,
commented, is src/droplab/tour/sections/s06_optimizers.py (inside the package, so that
`droplab tour` runs it from an installed droplab).
"""

import sys

from droplab.__main__ import main
from droplab.tour.sections.s06_optimizers import run  # noqa: F401  run() -> list[Check]

if __name__ == "__main__":
    sys.exit(main(["tour", "6", *sys.argv[1:]]))
