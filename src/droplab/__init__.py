"""droplab: dropout regularization, from the formula to a fast, tested PyTorch layer.

Functions: ``dropout`` (inverted or classic, ``p`` or ``keep_prob``, seeded), its variants
(``dropout1d/2d/3d``, ``alpha_dropout``, ``gaussian_dropout``, ``drop_connect``, ``drop_path``,
``drop_block_2d``, ...), ``dropout_mask`` and ``derive_seed``. Modules: ``Dropout`` (a drop-in
for ``torch.nn.Dropout``) and one per variant. Tools: ``replace_dropout`` (undone by
``restore_dropout``), ``check_scaling``, ``mc_dropout``, ``mc_predict``. Submodules: ``scratch``
(the NumPy engine), ``attention`` (SDPA with droplab's mask), ``data``, ``train``.
Run ``droplab --help`` for the command line; the README on the project page has a tour.

Names are imported lazily (PEP 562), so that ``import droplab`` and ``droplab --help`` stay
fast and never load torch, numba or matplotlib; type checkers and editors read the imports
under ``TYPE_CHECKING`` below, which must list every name of ``_EXPORTS``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from droplab._version import __version__

if TYPE_CHECKING:
    from droplab import (
        attention,
        data,
        functional,
        kernels,
        layers,
        mc,
        models,
        scratch,
        tools,
        train,
    )
    from droplab.functional import (
        alpha_dropout,
        drop_block_2d,
        drop_connect,
        drop_path,
        dropout,
        dropout1d,
        dropout2d,
        dropout3d,
        feature_alpha_dropout,
        gaussian_dropout,
        locked_dropout,
        shared_dropout,
    )
    from droplab.kernels.rng import derive_seed, dropout_mask
    from droplab.layers import (
        AlphaDropout,
        DropBlock2d,
        DropConnect,
        Dropout,
        Dropout1d,
        Dropout2d,
        Dropout3d,
        DropPath,
        FeatureAlphaDropout,
        GaussianDropout,
        LockedDropout,
    )
    from droplab.mc import mc_dropout, mc_predict
    from droplab.tools import check_scaling, replace_dropout, restore_dropout

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    # dropout, functional (droplab.functional)
    "dropout": "droplab.functional",
    "dropout1d": "droplab.functional",
    "dropout2d": "droplab.functional",
    "dropout3d": "droplab.functional",
    "alpha_dropout": "droplab.functional",
    "feature_alpha_dropout": "droplab.functional",
    "gaussian_dropout": "droplab.functional",
    "drop_connect": "droplab.functional",
    "drop_path": "droplab.functional",
    "drop_block_2d": "droplab.functional",
    "locked_dropout": "droplab.functional",
    "shared_dropout": "droplab.functional",
    "dropout_mask": "droplab.kernels.rng",
    "derive_seed": "droplab.kernels.rng",
    # dropout, modules (droplab.layers)
    "Dropout": "droplab.layers",
    "Dropout1d": "droplab.layers",
    "Dropout2d": "droplab.layers",
    "Dropout3d": "droplab.layers",
    "AlphaDropout": "droplab.layers",
    "FeatureAlphaDropout": "droplab.layers",
    "GaussianDropout": "droplab.layers",
    "DropConnect": "droplab.layers",
    "DropPath": "droplab.layers",
    "DropBlock2d": "droplab.layers",
    "LockedDropout": "droplab.layers",
    # tools for models
    "replace_dropout": "droplab.tools",
    "check_scaling": "droplab.tools",
    "restore_dropout": "droplab.tools",
    "mc_dropout": "droplab.mc",
    "mc_predict": "droplab.mc",
}

_SUBMODULES = (
    "attention",
    "data",
    "functional",
    "layers",
    "kernels",
    "mc",
    "scratch",
    "tools",
    "train",
    "models",
)

__all__ = ["__version__", *_EXPORTS, *_SUBMODULES]


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        return importlib.import_module(f"droplab.{name}")
    raise AttributeError(f"module 'droplab' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
