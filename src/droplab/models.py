"""The multilayer perceptron of the classic experiment, for both engines.

``784 -> hidden[0] -> ... -> hidden[-1] -> 10``, each hidden layer ``Linear, ReLU, Dropout(p)``
(no dropout layer where ``p == 0``), as in Dive into Deep Learning's dropout chapter; optionally a
``Dropout`` on the input pixels in front (``input_dropout``, Srivastava et al. 2014's 0.2).

Initial weights are drawn from one NumPy generator seeded by ``seed`` and loaded into either
engine, so the torch and NumPy engines start from the same numbers:

- ``init="normal"``: ``W ~ N(0, 0.01^2)``, ``b = 0`` (the tutorial's ``normal(std=0.01)``);
- ``init="torch"``: PyTorch's default for ``nn.Linear`` (``kaiming_uniform_(a=sqrt(5))``), that is
  ``W, b ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in))``.

Every dropout layer is seeded (its seed derived from ``seed`` and the layer's index), so its masks
are the counter-based ones shared by every droplab backend: a run is repeatable, resumable, and
the two engines draw the same masks.
"""

from __future__ import annotations

import numpy as np

ENGINES = ("torch", "scratch")
INITS = ("normal", "torch")
IN_FEATURES = 28 * 28
CLASSES = 10


def initial_weights(sizes: list[int], init: str, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(W, b)`` per layer for the layer sizes ``sizes``; ``W`` in torch's ``(out, in)`` layout."""
    if init not in INITS:
        raise ValueError(f"init must be one of {', '.join(map(repr, INITS))}, got {init!r}")
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0]))
    layers = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        if init == "normal":
            w = rng.normal(0.0, 0.01, size=(fan_out, fan_in))
            b = np.zeros(fan_out)
        else:
            bound = 1.0 / np.sqrt(fan_in)
            w = rng.uniform(-bound, bound, size=(fan_out, fan_in))
            b = rng.uniform(-bound, bound, size=fan_out)
        layers.append((w.astype(np.float32), b.astype(np.float32)))
    return layers


def dropout_seed(seed: int, layer: int | None) -> int:
    """The seed of the dropout after hidden layer ``layer`` (0-based), or of the input's (``None``)."""
    path = [seed, 1, layer] if layer is not None else [seed, 2]
    words = np.random.SeedSequence(path).generate_state(2, np.uint32)
    return int(words[0]) << 32 | int(words[1])


def mlp(
    hidden: tuple[int, ...] = (256, 256),
    dropout: tuple[float, ...] = (0.2, 0.5),
    *,
    engine: str = "torch",
    mode: str = "inverted",
    init: str = "normal",
    seed: int = 0,
    input_dropout: float = 0.0,
    in_features: int = IN_FEATURES,
    classes: int = CLASSES,
):
    """The MLP, as a ``torch.nn.Sequential`` (``engine="torch"``) or a ``droplab.scratch.Sequential``.

    The torch model flattens its input (``(N, 784)`` or ``(N, 1, 28, 28)``); the NumPy one takes
    ``(N, 784)``.

    Args:
        hidden: hidden layer widths. Default: ``(256, 256)``
        dropout: drop probability after each hidden layer (``0`` = no dropout layer).
            Default: ``(0.2, 0.5)``
        engine: ``"torch"`` or ``"scratch"`` (the NumPy engine). Default: ``"torch"``
        mode: ``"inverted"`` or ``"classic"`` dropout. Default: ``"inverted"``
        init: ``"normal"`` (N(0, 0.01^2), the tutorial's) or ``"torch"``. Default: ``"normal"``
        seed: seeds the initial weights and the dropout masks. Default: ``0``
        input_dropout: drop probability of the input pixels (``0`` = no input dropout layer).
            Default: ``0``

    Examples::

        >>> import torch
        >>> model = mlp((256, 256), (0.2, 0.5))
        >>> [type(m).__name__ for m in model]
        ['Flatten', 'Linear', 'ReLU', 'Dropout', 'Linear', 'ReLU', 'Dropout', 'Linear']
        >>> model(torch.zeros(3, 1, 28, 28)).shape
        torch.Size([3, 10])
        >>> [type(m).__name__ for m in mlp((64,), (0,), engine="scratch")]
        ['Linear', 'ReLU', 'Linear']
        >>> [type(m).__name__ for m in mlp((64,), (0.5,), input_dropout=0.2)][:3]
        ['Flatten', 'Dropout', 'Linear']
    """
    hidden, dropout = tuple(hidden), tuple(dropout)
    if len(hidden) != len(dropout):
        raise ValueError(
            f"dropout needs one rate per hidden layer: {len(hidden)} hidden layers, "
            f"{len(dropout)} rates"
        )
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(map(repr, ENGINES))}, got {engine!r}")
    sizes = [in_features, *hidden, classes]
    weights = initial_weights(sizes, init, seed)
    if engine == "torch":
        return _torch_mlp(sizes, dropout, weights, mode, seed, input_dropout)
    return _scratch_mlp(sizes, dropout, weights, mode, seed, input_dropout)


def _torch_mlp(sizes, dropout, weights, mode, seed, input_dropout):
    import torch
    from torch import nn

    from droplab.layers import Dropout

    layers: list[nn.Module] = [nn.Flatten()]
    if input_dropout > 0:
        layers.append(Dropout(input_dropout, mode=mode, seed=dropout_seed(seed, None)))
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        linear = nn.Linear(fan_in, fan_out)
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(weights[i][0]))
            linear.bias.copy_(torch.from_numpy(weights[i][1]))
        layers.append(linear)
        if i < len(dropout):
            layers.append(nn.ReLU())
            if dropout[i] > 0:
                layers.append(Dropout(dropout[i], mode=mode, seed=dropout_seed(seed, i)))
    return nn.Sequential(*layers)


def _scratch_mlp(sizes, dropout, weights, mode, seed, input_dropout):
    from droplab import scratch

    # no Flatten in front: the first Linear must be first so that backward(input_grad=False)
    # skips the gradient of the input, a third of the step's matrix work
    layers = []
    if input_dropout > 0:  # then the first Linear computes the input's gradient, for the mask
        layers.append(scratch.Dropout(input_dropout, mode=mode, seed=dropout_seed(seed, None)))
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        linear = scratch.Linear(fan_in, fan_out, rng=0)  # its own init is overwritten
        linear.weight.data[...] = weights[i][0]
        linear.bias.data[...] = weights[i][1]
        layers.append(linear)
        if i < len(dropout):
            layers.append(scratch.ReLU())
            if dropout[i] > 0:
                layers.append(scratch.Dropout(dropout[i], mode=mode, seed=dropout_seed(seed, i)))
    return scratch.Sequential(*layers)
