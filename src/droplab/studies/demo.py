"""The demo's study: one network trained with and without dropout (same seed, same initial
weights, same batches), in a regime where the network without dropout overfits (the ``overfit``
recipe) or as the tutorial trains it (``tutorial``); and what the report shows of the two
networks: their hidden activations and the statistics of them.
"""

from __future__ import annotations

RECIPES = ("overfit", "tutorial")
# --quick: (subset, epochs) per recipe, enough to exercise every output
QUICK = {"overfit": (500, 3), "tutorial": (2000, 1)}
# the activations shown: the hidden units' outputs on the first ACTIVATION_IMAGES test images
ACTIVATION_IMAGES = 1000


def recipe(name: str, **overrides):
    """The ``TrainConfig`` of a demo recipe, with dropout (the other arm sets every rate to 0)."""
    from droplab.train import TrainConfig

    if name == "overfit":
        base = TrainConfig(
            hidden=(512, 512, 512),
            dropout=(0.5, 0.5, 0.5),
            input_dropout=0.2,
            optimizer="adam",
            lr=1e-3,
            batch_size=100,
            reduction="mean",
            scheduler="exponential",
            gamma=0.96,
            epochs=80,
            subset=2000,
        )
    elif name == "tutorial":
        base = TrainConfig()  # the tutorial's defaults, as `droplab train`
    else:
        raise ValueError(f"recipe must be one of {', '.join(map(repr, RECIPES))}, got {name!r}")
    return base.replace(**{k: v for k, v in overrides.items() if v is not None})


def hidden_activations(model, images, *, limit: int = ACTIVATION_IMAGES) -> list:
    """The outputs of each hidden layer's ReLU (eval mode) on the first ``limit`` images.

    ``images`` are pixels in [0, 1] (a tensor or array of ``(N, 784)`` or ``(N, 1, 28, 28)``).
    One ``(limit, width)`` float64 NumPy array per hidden layer, for either engine's model.
    """
    import numpy as np

    x = np.asarray(images[:limit], dtype=np.float32).reshape(min(limit, len(images)), -1)
    outs = []
    if hasattr(model, "state_dict") and type(model).__module__.startswith("torch"):
        import torch

        model.eval()
        with torch.no_grad():
            h = torch.from_numpy(x)
            for layer in model:
                h = layer(h)
                if isinstance(layer, torch.nn.ReLU):
                    outs.append(h.double().numpy())
        return outs
    model.eval()
    h = x
    for layer in model:
        h = layer(h)
        if type(layer).__name__ == "ReLU":
            outs.append(np.asarray(h, dtype=np.float64))
    return outs


def activation_stats(acts, *, bins: int = 40, top: float | None = None) -> dict:
    """The numbers the report plots: per-unit mean activations and the activations' histogram.

    ``acts`` is one hidden layer's ``(images, units)`` array; ``top`` the histogram's upper edge
    (shared by both arms; default: this array's largest value).
    """
    import numpy as np

    top = float(acts.max()) if top is None else top
    top = top if top > 0 else 1.0
    counts, edges = np.histogram(acts, bins=bins, range=(0.0, top))
    return {
        "layer": None,
        "images": int(acts.shape[0]),
        "units": int(acts.shape[1]),
        "zero_fraction": float((acts <= 0).mean()),
        "mean": float(acts.mean()),
        "unit_means": [float(v) for v in acts.mean(axis=0)],
        "edges": [float(v) for v in edges],
        "counts": [int(v) for v in counts],
    }
