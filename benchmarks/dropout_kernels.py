"""Dropout kernels: droplab fast vs torch eager vs torch.compile vs a tensor copy (same run).

The same code as ``droplab bench``; run ``python benchmarks/dropout_kernels.py --help``.
"""

import sys

from droplab.__main__ import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
