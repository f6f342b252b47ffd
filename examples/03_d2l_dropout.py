"""Section 3 of `droplab tour`: d2l's dropout_layer(X, p) on arange(16).reshape(2, 8).

p = 0 returns X, p = 0.5 keeps 2x or 0, p = 1 returns zeros: d2l's function, droplab.Dropout and
the NumPy engine's Dropout (the same seeded masks, the same matrix).

Usage: python examples/03_d2l_dropout.py; exit status 1 if a check fails. The code,
commented, is src/droplab/tour/sections/s03_d2l_dropout.py (inside the package, so that
`droplab tour` runs it from an installed droplab).
"""

import sys

from droplab.__main__ import main
from droplab.tour.sections.s03_d2l_dropout import run  # noqa: F401  run() -> list[Check]

if __name__ == "__main__":
    sys.exit(main(["tour", "3", *sys.argv[1:]]))
