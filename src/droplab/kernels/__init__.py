"""Kernels: the counter-based dropout mask and the fast CPU (and optional GPU) dropout kernels.

Nothing in here imports ``torch.nn``; ``numba`` is imported only by the modules that need it.
"""
