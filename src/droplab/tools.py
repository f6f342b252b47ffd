"""Tools for models: check a dropout layer's train/eval scaling, swap torch's dropout for droplab's.

``check_scaling`` measures what a dropout layer must guarantee, ``E[y_train] = y_eval``, and
flags the tutorial bug of scaling twice (dividing by ``1 - p`` in training AND multiplying by
``1 - p`` at eval). ``replace_dropout`` turns a torch model into one whose dropout is droplab's
(seedable, classic or inverted, fast kernels), keeping every ``p``: its modules (timm-style
``DropPath`` included) and, through ``droplab.attention``, the attention dropout that models
apply inside ``F.scaled_dot_product_attention``; ``restore_dropout`` undoes it.
"""

from __future__ import annotations

import inspect
import math
import re
import warnings
from dataclasses import dataclass

import torch
from torch import nn

from droplab.kernels.rng import check_seed, derive_seed


@dataclass(frozen=True)
class ScalingCheck:
    """The result of :func:`check_scaling`; true (``bool(result)``) when train and eval agree."""

    consistent: bool  # |ratio - expected| <= tolerance
    ratio: float  # measured E[train output] / eval output
    expected: float  # 1.0: the expected training output equals the eval output
    tolerance: float  # z standard errors of the measured ratio (its sampling error)
    samples: int  # training forward passes averaged
    message: str  # one line: the verdict and, when it can tell, the cause

    def __bool__(self) -> bool:
        return self.consistent


def _default_input(module: nn.Module) -> torch.Tensor:
    # the dtype and device of the module's weights, if it has any
    t = next(iter(module.parameters()), None)
    if t is None:
        t = next(iter(module.buffers()), None)
    if t is None or not t.is_floating_point():
        return torch.ones(64, 128)
    return torch.ones(64, 128, dtype=t.dtype, device=t.device)


def _diagnose(module: nn.Module, ratio: float, tol: float) -> str:
    """The likely cause of a ratio other than 1, from the module's ``p`` if it has one."""
    p = getattr(module, "p", None)
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 < p < 1:
        return "scale once: by 1/(1-p) in training (inverted) or by (1-p) at eval (classic)"
    if abs(ratio - 1 / (1 - p)) <= tol:
        return (
            f"ratio = 1/(1-p) for p={p}: the layer scales twice, dividing by (1-p) in training "
            "AND multiplying by (1-p) at eval; scale in one place only"
        )
    if abs(ratio - (1 - p)) <= tol:
        return (
            f"ratio = 1-p for p={p}: the layer scales in neither place; divide by (1-p) in "
            "training (inverted) or multiply by (1-p) at eval (classic)"
        )
    return f"for p={p}, scale once: by 1/(1-p) in training or by (1-p) at eval"


@torch.no_grad()
def check_scaling(
    module: nn.Module, x: torch.Tensor | None = None, *, samples: int = 200, z: float = 6.0
) -> ScalingCheck:
    r"""Check that a dropout-like module's expected training output equals its eval output.

    Runs ``module`` once in eval mode (``y_eval``) and ``samples`` times in training mode
    (``y_1 ... y_S``) on the same input, and measures the ratio of the expected training output
    to the eval output, per sample as the least-squares slope (so inputs of any sign work)::

        r_s = <y_s, y_eval> / <y_eval, y_eval>,     ratio = mean_s(r_s)

    A correct layer, inverted or classic, has ``ratio = 1``. The tolerance is the sampling
    error, not a hand-picked number: ``z`` standard errors of the mean, ``z * std(r_s) /
    sqrt(S)``, which for i.i.d. Bernoulli masks is the binomial ``z * sqrt(p / ((1 - p) n S))``
    on ``n`` equal inputs (plus a few ulps of the output dtype for deterministic modules). With
    the default ``z = 6`` a correct layer is flagged with probability below 1e-8, while the
    double-scaling bug (ratio ``1 / (1 - p)``) is caught for any ``p`` above about 0.001.

    Runs under ``torch.no_grad``; afterwards every submodule's ``training`` flag, PyTorch's RNG
    state (CPU and ``x``'s GPU) and the ``step`` counter of seeded droplab layers are as before,
    so a check does not change a training run.

    Modules that preserve other moments by design (``AlphaDropout`` keeps the mean and variance of
    a standard normal input, not each element's expectation) do not pass, rightly.

    Args:
        module: the layer (or model) to check.
        x: its input; give one for modules that need a particular shape (``DropConnect``,
            ``Dropout2d``, a model). Default: ``torch.ones(64, 128)`` in the dtype and device of
            the module's parameters (float32 on the CPU if it has none).
        samples: training forward passes to average. Default: 200
        z: the tolerance in standard errors. Default: 6.0

    Returns:
        ScalingCheck: ``consistent``, ``ratio``, ``expected`` (1.0), ``tolerance``, ``samples``
        and a one-line ``message``; ``bool(result)`` is ``result.consistent``.

    Examples::

        >>> import torch, droplab
        >>> check_scaling(torch.nn.Dropout(0.5)).consistent
        True
        >>> check_scaling(droplab.Dropout(0.5, mode="classic")).consistent
        True
        >>> class CustomDropout(torch.nn.Module):  # the tutorial's layer
        ...     def __init__(self, p=0.5):
        ...         super().__init__()
        ...         self.p = p
        ...     def forward(self, x):
        ...         if self.training:
        ...             mask = (torch.rand_like(x) > self.p).float()
        ...             return x * mask / (1 - self.p)
        ...         return x * (1 - self.p)
        >>> result = check_scaling(CustomDropout(0.5))
        >>> result.consistent, round(result.ratio)
        (False, 2)
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__} {module!r}")
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 2:
        raise ValueError(f"samples must be an int >= 2, got {samples!r}")
    if isinstance(z, bool) or not isinstance(z, (int, float)) or not z > 0:
        raise ValueError(f"z must be a positive number, got {z!r}")
    if x is None:
        x = _default_input(module)
    training = {m: m.training for m in module.modules()}
    steps = {m: m.step for m in module.modules() if isinstance(getattr(m, "step", None), int)}
    devices = [x.device.index or 0] if x.device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices):
            y_eval = module.eval()(x).double()
            norm = float((y_eval * y_eval).sum())
            module.train()
            r = torch.empty(samples, dtype=torch.float64)
            for s in range(samples):
                y = module(x).double()
                r[s] = (y * y_eval).sum() / norm if norm > 0 else y.abs().max()
    finally:
        for m, mode in training.items():
            m.training = mode
        for m, step in steps.items():
            m.step = step
    # plus the rounding of a deterministic module's output: one scale, one product
    eps = torch.finfo(x.dtype if x.is_floating_point() else torch.float32).eps
    mean = float(r.mean())
    tol = z * float(r.std()) / math.sqrt(samples) + 2 * eps
    if norm == 0:
        # eval output is zero (e.g. classic dropout with p = 1): train must be zero too
        ok = mean <= tol
        ratio = math.nan
        msg = (
            "consistent: eval output and training output are both zero"
            if ok
            else f"inconsistent: eval output is zero but training output is not (mean max {mean:.4g})"
        )
        return ScalingCheck(ok, ratio, 1.0, tol, samples, msg)
    ok = abs(mean - 1.0) <= tol
    head = (
        f"E[train output] / eval output = {mean:.4f}, expected 1 +- {tol:.2g} ({samples} samples)"
    )
    msg = f"consistent: {head}" if ok else f"inconsistent: {head}; {_diagnose(module, mean, tol)}"
    return ScalingCheck(ok, mean, 1.0, tol, samples, msg)


# torch's dropout modules and the names of their droplab equivalents in droplab.layers
_REPLACEMENTS: dict[type, str] = {
    nn.Dropout: "Dropout",
    nn.Dropout1d: "Dropout1d",
    nn.Dropout2d: "Dropout2d",
    nn.Dropout3d: "Dropout3d",
    nn.AlphaDropout: "AlphaDropout",
    nn.FeatureAlphaDropout: "FeatureAlphaDropout",
}


def _is_droplab(module: nn.Module) -> bool:
    return type(module).__module__.split(".")[0] == "droplab"


def _is_timm_drop_path(module: nn.Module) -> bool:
    """timm's ``DropPath`` (or a copy of it): a class named so, with a ``drop_prob``."""
    return (
        type(module).__name__ == "DropPath"
        and not _is_droplab(module)
        and isinstance(getattr(module, "drop_prob", None), (int, float))
    )


def _accepted(cls: type, kwargs: dict) -> dict:
    """The ``kwargs`` that ``cls``'s constructor takes (``DropPath`` has no ``backend``)."""
    params = inspect.signature(cls).parameters
    return {k: v for k, v in kwargs.items() if k in params}


def _swap_target(child: nn.Module, layers) -> tuple[str, type | None, dict]:
    """(droplab class name, the class or None if droplab lacks it, its constructor arguments)."""
    if _is_timm_drop_path(child):
        scale = getattr(child, "scale_by_keep", True)  # timm < 0.6 always scaled
        return "DropPath", layers.DropPath, {"p": child.drop_prob, "scale_by_keep": scale}
    name = _REPLACEMENTS.get(type(child))
    if name is None:
        return "", None, {}
    return name, getattr(layers, name, None), {"p": child.p, "inplace": child.inplace}


def replace_dropout(model: nn.Module, *, attention: bool = True, **kwargs) -> nn.Module:
    r"""Make every dropout of ``model`` droplab's, with the same ``p``, in place.

    Modules: replaces ``torch.nn.Dropout``, ``Dropout1d``, ``Dropout2d``, ``Dropout3d``,
    ``AlphaDropout`` and ``FeatureAlphaDropout`` (exactly these classes, not subclasses of them,
    whose forward may differ) and timm-style ``DropPath`` (a class named ``DropPath`` with
    ``drop_prob`` and ``scale_by_keep``, swapped for :class:`droplab.DropPath` with the same
    semantics) at any depth, keeping ``p``, ``inplace`` and the training flag; a module
    registered in several places is replaced by one droplab module. A torch class that droplab
    does not have is left in place, with a warning.

    Attention (``attention=True``): the modules that drop attention probabilities inside a call
    (``torch.nn.MultiheadAttention``, and any module whose forward calls
    ``F.scaled_dot_product_attention(dropout_p=...)``, ``F.dropout``, or Hugging Face's
    ``attention_interface``: BERT, GPT-2, ViT in "sdpa" and "eager", timm's ``Attention``) are
    routed through droplab's mask by :func:`droplab.attention.route_attention`: for this model
    instance only, nothing global, undone by :func:`restore_dropout`. Eval outputs stay bit for
    bit the same (PyTorch's own kernels run when nothing is dropped) and the state_dict does not
    change. Attention dropout is inverted whatever ``mode`` says (the model passes ``p`` only
    in training).

    A warning names, by module path, each dropout it cannot reach: a forward that draws its own
    random numbers (``torch.rand_like``, ``bernoulli``, ``F.dropout2d``, ... read from its
    source), a module whose class is named like a dropout but is not one droplab knows. A
    routed forward that makes such a draw with gradients on is named once more when it happens.

    ``kwargs`` go to every droplab constructor that takes them (``mode``, ``backend``, ...). A
    ``seed`` is not shared: the ``i``-th replaced module (in ``model.modules()`` order) gets
    ``derive_seed(seed, i)`` and the ``j``-th attention module ``derive_seed(seed, n + j)``
    after ``n`` replaced modules, so that layers of the same shape do not drop the same elements
    and a seeded training run draws nothing from PyTorch's RNG.

    Returns ``model`` (or its replacement if ``model`` is itself a dropout module).

    Args:
        model: the model to change in place.
        attention: route attention dropout too. Default: ``True``
        **kwargs: keyword arguments of the droplab modules, e.g. ``mode``, ``seed``,
            ``backend``.

    Examples::

        >>> import torch, droplab
        >>> model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Dropout(0.2))
        >>> replace_dropout(model, seed=0)  # doctest: +ELLIPSIS
        Sequential(
          (0): Linear(in_features=4, out_features=4, bias=True)
          (1): Dropout(p=0.2, mode='inverted', inplace=False, seed=...)
        )
    """
    from droplab import attention as attn  # here: model surgery loads it when used
    from droplab import layers  # here: the variant classes are looked up when called

    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__} {model!r}")
    seed = kwargs.pop("seed", None)
    if seed is not None:
        seed = check_seed(seed)
    replaced: dict[int, nn.Module] = {}  # id(torch module) -> its droplab replacement
    missing: set[str] = set()

    def swap(child: nn.Module) -> nn.Module | None:
        if id(child) in replaced:
            return replaced[id(child)]
        name, cls, args = _swap_target(child, layers)
        if cls is None:
            if name:
                missing.add(name)
            return None
        extra = {} if seed is None else {"seed": derive_seed(seed, len(replaced))}
        new = cls(**{**args, **_accepted(cls, kwargs), **extra})
        new.train(child.training)
        # the original, for restore_dropout (a tuple: not registered as a submodule)
        new.__dict__["_droplab_original"] = (child,)
        replaced[id(child)] = new
        return new

    root = swap(model)
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            new = swap(child)
            if new is not None:
                setattr(parent, name, new)
    for name in sorted(missing):
        warnings.warn(f"droplab has no {name}; torch.nn.{name} left in place", stacklevel=2)
    target = model if root is None else root
    if attention:
        routers = attn.route_attention(
            target, seed=seed, backend=kwargs.get("backend", "auto"), first=len(replaced)
        )
        if routers and kwargs.get("mode", "inverted") == "classic":
            warnings.warn(
                "attention dropout stays inverted under mode='classic' ("
                + ", ".join(r.path or "model" for r in routers)
                + "): the model passes its p only in training",
                stacklevel=2,
            )
    lines = attn.unreachable_dropout(target)
    routed = {id(m) for _, m in attn.routed_modules(target)}
    for name, module in target.named_modules():
        kind = type(module).__name__
        if (
            re.search(r"Drop(out|Path|Block|Connect)", kind)
            and not _is_droplab(module)
            and not isinstance(module, nn.modules.dropout._DropoutNd)
            and id(module) not in routed
            and _swap_target(module, layers)[1] is None
            and not any(line.startswith(f"{name or kind} ") for line in lines)
        ):
            lines.append(f"{name or kind} ({kind}) is not a dropout droplab knows")
    for line in lines:
        warnings.warn(f"replace_dropout cannot reach: {line}", stacklevel=2)
    return target


def restore_dropout(model: nn.Module) -> nn.Module:
    """Undo :func:`replace_dropout`: the original modules back, attention unrouted, in place.

    Each droplab module that ``replace_dropout`` put in is swapped back for the module it
    replaced (the same object, its ``p`` as it was); every routed attention module gets its own
    forward back. Returns ``model`` (or the original if ``model`` itself was replaced).

    Examples::

        >>> model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Dropout(0.2))
        >>> type(restore_dropout(replace_dropout(model))[1]).__name__
        'Dropout'
    """
    from droplab import attention as attn

    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__} {model!r}")
    attn.unroute_attention(model)
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            original = child.__dict__.get("_droplab_original")
            if original is not None:
                setattr(parent, name, original[0])
    original = model.__dict__.get("_droplab_original")
    return model if original is None else original[0]
