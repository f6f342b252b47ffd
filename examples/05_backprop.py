"""Section 5 of `droplab tour`: backpropagation through the 2-2-2 network.

Kaiming/Xavier init, ReLU then sigmoid, MSE, input [0.05, 0.10], target [0.01, 0.99]: the
gradients from autograd, from the NumPy engine's hand-written backward and from the chain rule
by hand, and the course's gradient check.

Usage: python examples/05_backprop.py; exit status 1 if a check fails. The code,
commented, is src/droplab/tour/sections/s05_backprop.py (inside the package, so that
`droplab tour` runs it from an installed droplab).
"""

import sys

from droplab.__main__ import main
from droplab.tour.sections.s05_backprop import run  # noqa: F401  run() -> list[Check]

if __name__ == "__main__":
    sys.exit(main(["tour", "5", *sys.argv[1:]]))
