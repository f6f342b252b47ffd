"""droplab: dropout regularization, from the formula to a fast, tested PyTorch layer.

The public API (``shared/API.md``). Names are imported lazily (PEP 562), so that
``import droplab`` and ``droplab --help`` stay fast and never load numba or matplotlib.
"""

from __future__ import annotations

import importlib

from droplab._version import __version__

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
    "mc_dropout": "droplab.mc",
    "mc_predict": "droplab.mc",
}

_SUBMODULES = (
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
