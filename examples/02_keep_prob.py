"""Section 2 of `droplab tour`: the course's keep_prob walk-through.

A = [0.2, 0.6, 0.4, 0.9], mask [1, 0, 1, 0], keep_prob 0.5: the mean goes 0.525 -> 0.15 -> 0.3,
and over many masks it comes back to 0.525, within a bound derived from the Bernoulli variance.

Usage: python examples/02_keep_prob.py; exit status 1 if a check fails. The code,
commented, is src/droplab/tour/sections/s02_keep_prob.py (inside the package, so that
`droplab tour` runs it from an installed droplab).
"""

import sys

from droplab.__main__ import main
from droplab.tour.sections.s02_keep_prob import run  # noqa: F401  run() -> list[Check]

if __name__ == "__main__":
    sys.exit(main(["tour", "2", *sys.argv[1:]]))
