"""Section 8 of `droplab tour`: nn.Dropout(p=0.4) after Linear(4, 5) on randint(0, 10, (1, 4)).

Which outputs are zeroed, the 1 / 0.6 scale of the kept ones, droplab reproducing torch's output
from its mask, and the drop rate over a million elements.

Usage: python examples/08_nn_dropout.py; exit status 1 if a check fails. The code,
commented, is src/droplab/tour/sections/s08_nn_dropout.py (inside the package, so that
`droplab tour` runs it from an installed droplab).
"""

import sys

from droplab.__main__ import main
from droplab.tour.sections.s08_nn_dropout import run  # noqa: F401  run() -> list[Check]

if __name__ == "__main__":
    sys.exit(main(["tour", "8", *sys.argv[1:]]))
