"""The thread count of every command, chosen in one place.

Default: one thread. The commands train a small MLP, where a second thread gains little on an
idle machine and loses everything on a busy one: every parallel op waits for a thread the
scheduler has descheduled. Measured on the 2-core development machine (``droplab demo``, 5
epochs, both runs): idle, 1 thread 9-10 s and 2 threads 7 s; with one core busy (``yes >
/dev/null``), 1 thread 10 s, 2 threads 130 s and torch's default 165 s. One thread also makes a
result independent of the machine it ran on (another thread count rounds differently).
``--threads N`` asks for more.
"""

from __future__ import annotations

import os
import sys

DEFAULT_THREADS = 1
# more threads than this is never faster and, far beyond (--threads 100000), crashes the OpenMP
# runtimes of torch and numba: refused with the range instead
OVERSUBSCRIPTION = 4


def max_threads() -> int:
    """The most threads a run may ask for: ``OVERSUBSCRIPTION`` per core of this machine."""
    return OVERSUBSCRIPTION * (os.cpu_count() or 1)


def resolve_threads(requested: int | None) -> int:
    """The thread count a command runs with: ``requested``, or ``DEFAULT_THREADS``."""
    if requested is None:
        return DEFAULT_THREADS
    check_threads(requested)
    return requested


def check_threads(threads, name: str = "threads") -> None:
    """``ValueError`` unless ``threads`` is None or an integer in ``[1, max_threads()]``."""
    if threads is None:
        return
    top = max_threads()
    if isinstance(threads, bool) or not isinstance(threads, int) or not 1 <= threads <= top:
        raise ValueError(
            f"{name} must be None or an integer in [1, {top}] ({OVERSUBSCRIPTION} per core of "
            f"the {os.cpu_count() or 1} here), got {threads!r}"
        )


def set_threads(threads: int | None) -> None:
    """Fix the thread count of this process: torch's (intra-op; inter-op once, where allowed)
    and numba's, which droplab's fast dropout kernels use (else every worker would start one
    numba thread per core). ``None`` leaves both alone."""
    if not threads:
        return
    check_threads(threads)
    if "numba" in sys.modules:
        import numba

        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    else:  # read when numba is first imported
        os.environ["NUMBA_NUM_THREADS"] = str(threads)
    import torch

    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(threads)
    except RuntimeError:  # only allowed before the first parallel op; harmless later
        pass
