"""droplab.scratch: the NumPy engine, with every backward pass written by hand.

Pure NumPy (it never imports torch or numba), readable like a textbook and checked against
PyTorch to the last digits: same argument names, defaults, initializations, update rules and
schedules as ``torch.nn`` / ``torch.optim``, and the same seeded dropout masks as the torch
engine (``dropout_mask``). The training protocol, one step::

    >>> import numpy as np
    >>> from droplab.scratch import Sequential, Linear, ReLU, Dropout, CrossEntropyLoss, optim
    >>> net = Sequential(Linear(784, 256, rng=0), ReLU(), Dropout(0.5, seed=0), Linear(256, 10, rng=1))
    >>> loss_fn, opt = CrossEntropyLoss(), optim.SGD(net.parameters(), lr=0.5)
    >>> X, y = np.zeros((8, 784), dtype=np.float32), np.arange(8) % 10
    >>> opt.zero_grad()
    >>> loss = loss_fn(net(X), y)                          # forward
    >>> _ = net.backward(loss_fn.backward(), input_grad=False)  # backward: fills p.grad
    >>> opt.step()

Modules: ``module`` (Parameter, Module, Sequential), ``layers``, ``init``, ``losses``, ``optim``,
``lr_scheduler``, ``gradcheck``, ``mask``.
"""

from droplab.scratch import init, lr_scheduler, optim
from droplab.scratch.gradcheck import GradCheckResult, grad_check, rel_error
from droplab.scratch.layers import Dropout, Flatten, Linear, ReLU, Sigmoid, Tanh, freeze_masks
from droplab.scratch.losses import (
    BCELoss,
    CrossEntropyLoss,
    L1Loss,
    L2Penalty,
    MSELoss,
    SmoothL1Loss,
)
from droplab.scratch.mask import derive_seed, dropout_mask
from droplab.scratch.module import Module, Parameter, Sequential

__all__ = [
    "Parameter",
    "Module",
    "Sequential",
    "Linear",
    "ReLU",
    "Sigmoid",
    "Tanh",
    "Flatten",
    "Dropout",
    "freeze_masks",
    "CrossEntropyLoss",
    "BCELoss",
    "L1Loss",
    "MSELoss",
    "SmoothL1Loss",
    "L2Penalty",
    "dropout_mask",
    "derive_seed",
    "grad_check",
    "GradCheckResult",
    "rel_error",
    "init",
    "optim",
    "lr_scheduler",
]
