"""Dropout, modules: thin ``torch.nn.Module`` wrappers over ``droplab.functional``.

Each module checks and stores its arguments in ``__init__``; ``forward`` is one call to its
function with ``self.training`` passed explicitly; ``extra_repr`` shows the hyper-parameters.
Every droplab module whose forward is random in training sets the class attribute
``stochastic = True``: that is how ``droplab.mc_dropout`` finds them.
"""

from __future__ import annotations

import torch
from torch import nn

from droplab import functional as F

# ----------------------------------------------------------------------------------------------
# Dropout
# ----------------------------------------------------------------------------------------------


# ----------------------------------------------------------------------------------------------
# variants
# ----------------------------------------------------------------------------------------------
