"""Monte-Carlo dropout: sampling at test time, predictive uncertainty, and calibration metrics.

Keeping dropout on at test time and averaging ``T`` stochastic forward passes approximates the
predictive distribution of a Bayesian network (Gal & Ghahramani 2016, "Dropout as a Bayesian
Approximation: Representing Model Uncertainty in Deep Learning", ICML)::

    p(y | x)  ~  1/T sum_t p(y | x, W_t),          W_t: the weights with dropout mask t

Classification, with ``p_t = softmax(f_t(x))`` and ``pbar = mean_t p_t``::

    entropy     H[pbar] = -sum_c pbar_c log pbar_c                 in [0, log C]
    mutual_info H[pbar] - mean_t H[p_t]    (BALD, Houlsby et al. 2011) in [0, H[pbar]]
    variance    mean_t p_t**2 - pbar**2    (per class)

Regression, with ``y_t = f_t(x)`` and the model precision ``tau``::

    mean        mean_t y_t
    variance    1/tau + mean_t y_t**2 - mean_t(y_t)**2
    test LL     logsumexp_t(-tau/2 ||y - y_t||^2) - log T - 1/2 log(2 pi) + 1/2 log tau

What this module gets right that the usual recipes do not: only dropout-like modules sample
(BatchNorm and every other module stay in eval, unlike Keras' ``training=True``); every torch and
droplab dropout kind is found; modes are restored exactly, also after an exception; a model
whose passes come out identical (functional dropout tied to the parent's ``training``) is
reported instead of silently giving zero uncertainty; and the ``T`` passes run as one batched
forward rather than a Python loop.
"""

from __future__ import annotations

import contextlib
import sys
import warnings
from collections.abc import Iterator, Mapping

import torch
from torch import nn
from torch.nn.modules.dropout import _DropoutNd

from droplab._checks import check_seed
from droplab.attention import routed_modules
from droplab.mc.fast import BLOCK_ELEMENTS, plan, run_blocks
from droplab.mc.summary import MCPrediction, Summary, fill_rows

TASKS = ("classify", "regress")

# ----------------------------------------------------------------------------------------------
# switching dropout on at test time
# ----------------------------------------------------------------------------------------------


def is_dropout_module(module: nn.Module) -> bool:
    """Whether ``module`` is dropout-like: torch's dropout kinds or a droplab module whose class
    sets ``stochastic = True`` (every droplab dropout variant, DropConnect, DropPath, ...)."""
    return isinstance(module, _DropoutNd) or bool(getattr(type(module), "stochastic", False))


def _deterministic_prefix(model: nn.Module) -> tuple[nn.Module | None, nn.Module]:
    """Split an ``nn.Sequential`` before its first module that may be random.

    The prefix (leading children built from PyTorch's own non-dropout modules, all deterministic
    in eval mode) gives the same output on every pass, so ``mc_predict`` runs it once on the
    ``N`` inputs instead of ``T`` times: for an MLP with dropout after its first layer that skips
    the largest matrix product. Anything else (custom modules, other containers) is kept whole.
    """
    if not isinstance(model, nn.Sequential):
        return None, model
    cut = 0
    for child in model:
        known = all(
            type(m).__module__.startswith("torch.nn.modules.") and not is_dropout_module(m)
            for m in child.modules()
        )
        if not known:
            break
        cut += 1
    if cut == 0:
        return None, model
    return model[:cut], model[cut:]


def dropout_modules(model: nn.Module) -> list[nn.Module]:
    """The dropout-like modules of ``model`` (``model`` itself included), in ``modules()`` order."""
    return [m for m in model.modules() if is_dropout_module(m)]


@contextlib.contextmanager
def mc_dropout(model: nn.Module) -> Iterator[nn.Module]:
    """Context manager: dropout layers sample, every other module stays in eval.

    On entry the whole model is put in eval mode and then only its dropout-like modules
    (``torch.nn.Dropout``/``1d``/``2d``/``3d``/``AlphaDropout``/``FeatureAlphaDropout`` and every
    droplab module with ``stochastic = True``) in training mode, so BatchNorm keeps using its
    running statistics. On exit, also after an exception, every module gets back its exact
    previous ``training`` flag, and seeded droplab modules their ``step`` counter (so a
    Monte-Carlo evaluation in the middle of a seeded training run does not shift its masks, and
    repeating it repeats its masks). Warns when the model has no dropout-like module.

    Only the ``training`` flag of the dropout modules themselves is set (not their children's).
    Attention dropout: a model's attention modules pass their ``p`` to
    ``F.scaled_dot_product_attention`` (or ``F.dropout``) only when they are in training mode
    themselves, so the attention modules that ``droplab.replace_dropout`` routed through droplab
    (``droplab.attention.routed_modules``) are put in training mode too (their own flag only; in
    Hugging Face BERT/GPT-2/ViT, timm's ``Attention`` and ``torch.nn.MultiheadAttention`` that
    flag switches nothing but the dropout), and their routers' step counters are restored on
    exit. An attention module that was not routed stays in eval: its dropout does not sample.

    Examples::

        >>> import torch, droplab
        >>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.BatchNorm1d(8),
        ...                           torch.nn.Dropout(0.5), torch.nn.Linear(8, 2))
        >>> with droplab.mc_dropout(net):
        ...     [m.training for m in net]
        [False, False, True, False]
        >>> net.training
        True
    """
    saved = [(m, m.training) for m in model.modules()]
    drops = dropout_modules(model)
    # seeded droplab modules count their training forwards (mask k comes from (seed, k)):
    # put the counters back too, so an evaluation amid a seeded training run leaves its masks
    steps = [(m, m.step) for m in drops if isinstance(getattr(m, "step", None), int)]
    attention = [m for _, m in routed_modules(model)]
    steps += [(m.forward.router, m.forward.router.step) for m in attention]
    if not drops and not attention:
        warnings.warn(
            f"mc_dropout: {type(model).__name__} has no dropout module (torch.nn.Dropout & co or a "
            "droplab module), so its passes are deterministic; functional dropout "
            "(F.dropout(x, training=self.training)) cannot be switched on alone",
            RuntimeWarning,
            stacklevel=3,
        )
    try:
        model.eval()
        for m in drops + attention:
            m.training = True
        yield model
    finally:
        for m, flag in saved:
            m.training = flag
        for m, step in steps:
            m.step = step


def _model_device(model: nn.Module, fallback: torch.device) -> torch.device:
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return fallback


def _progress_bar(total: int, enabled: bool | None):
    """A rich progress bar over ``total`` chunks, or ``None``. ``enabled=None``: only for long
    runs (many chunks) on a terminal."""
    if enabled is None:
        enabled = total >= 20 and sys.stderr.isatty()
    if not enabled:
        return None
    from droplab._console import progress_bar

    return progress_bar(None, "mc_predict", "chunks", transient=True)


def _check_arguments(model, x, samples, seed, batch_size, task, tau) -> int | None:
    """``mc_predict``'s arguments checked (``ValueError``/``TypeError`` naming the one that is
    wrong); returns the checked seed."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {', '.join(map(repr, TASKS))}, got {task!r}")
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise ValueError(f"samples must be an integer >= 1, got {samples!r}")
    if batch_size is not None and (isinstance(batch_size, bool) or int(batch_size) < 1):
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    if tau is not None and not (tau > 0):
        raise ValueError(f"tau must be a positive number, got {tau!r}")
    if tau is not None and task != "regress":
        raise ValueError("tau is for task='regress' (it adds the noise variance 1/tau)")
    if not isinstance(x, torch.Tensor) or x.dim() == 0:
        raise TypeError("x must be a tensor with a batch dimension (N, ...)")
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    return None if seed is None else check_seed(seed)


def mc_predict(
    model: nn.Module,
    x: torch.Tensor,
    samples: int = 50,
    *,
    seed: int | None = None,
    batch_size: int | None = None,
    task: str = "classify",
    tau: float | None = None,
    from_logits: bool = True,
    keep_samples: bool = False,
    progress: bool | None = None,
    output=None,
) -> MCPrediction:
    """Monte-Carlo dropout prediction: ``samples`` stochastic passes, summarized.

    The ``T = samples`` passes are vectorized: the batch is repeated ``T`` times along the first
    axis and sent through the model in chunks of at most ``batch_size`` rows of the repeated
    batch (default: ``max(N, 16384)``, at least one whole pass per forward), never as a Python
    loop over ``T``. Rows of the repeated batch are ordered pass-major (pass 0's ``N`` rows, then
    pass 1's, ...), so the random numbers are drawn in the order a loop ``for t in range(T):
    model(x)`` would draw them: for a model with one dropout layer whose mask is drawn
    element by element from torch's generator (``torch.rand``, and ``F.dropout`` on CPUs where
    torch does not use MKL's parallel Bernoulli), vectorized and looped give the same numbers;
    with several dropout layers the two draw the same distribution in another order. Every
    row's mask is independent, as in a loop. droplab modules built with their own ``seed`` draw
    from it (their step counter is restored afterwards), not from ``seed``. For an
    ``nn.Sequential``, the leading PyTorch modules before the first dropout (deterministic in
    eval) run once on the ``N`` inputs, and only the rest is repeated ``T`` times. When that
    rest is an ``nn.Sequential`` of ``nn.Linear``, elementwise activations, ``torch.nn.Dropout``
    and ``droplab.Dropout`` on a float32 CPU batch (the usual MC-dropout MLP), each chunk's
    masks are drawn first, layer by layer, exactly as the module calls would draw them (the
    same generator calls in the same order, the same droplab seeds and step counters), and the
    layers then run over blocks of rows that stay in the CPU cache, with the same masks: the
    same outputs up to the float rounding of matrix products of other shapes, several times
    faster. torch's dropout masks are drawn there as the float64 uniforms ``< 1 - p`` that
    ``bernoulli_`` compares, which is checked once against ``F.dropout`` (on CPUs where torch
    draws Bernoulli masks through MKL it differs, and the modules are called instead). Models
    with hooks, other modules or another device go through the modules themselves. Per-pass
    probabilities are summarized in float32 and summed per example in float64.

    Args:
        model: the network; run under ``mc_dropout`` (dropout samples, the rest in eval) and
            ``torch.no_grad``. Its modes are restored afterwards.
        x: a batch ``(N, ...)``; moved to the model's device.
        samples: ``T``, the number of passes. Default: 50
        seed: when given, the passes draw from ``torch.manual_seed(seed)`` inside
            ``torch.random.fork_rng`` (the caller's global RNG is left untouched), so the result
            is repeatable. Default: ``None`` (the global RNG)
        batch_size: the most rows of the repeated batch in one forward (bounds memory).
        task: ``"classify"`` (the model returns logits, or probabilities with
            ``from_logits=False``) or ``"regress"``.
        tau: regression only: the model precision; ``1/tau`` is added to the variance.
        keep_samples: also return the per-pass probabilities/outputs ``(T, N, ...)``.
        progress: a progress bar (``None``: for long runs on a terminal).
        output: which part of the model's output to summarize, for models that do not return
            a tensor: a key (``"logits"``) of a dict or Hugging Face ``ModelOutput``, an index of
            a tuple, or a function of the output. Default: ``None`` = the tensor itself, the
            ``logits`` of a ``ModelOutput``/dict that has them (else its first value), the
            first element of a tuple.

    Returns:
        ``MCPrediction`` with ``mean``, ``variance``, and for classification ``entropy`` and
        ``mutual_info`` (BALD). Warns when the passes are all identical (no dropout was active).

    Examples::

        >>> import torch, droplab
        >>> net = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(),
        ...                           torch.nn.Dropout(0.5), torch.nn.Linear(16, 3))
        >>> out = droplab.mc_predict(net, torch.randn(5, 4), samples=20, seed=0)
        >>> out.mean.shape, out.entropy.shape, bool((out.mutual_info <= out.entropy + 1e-6).all())
        (torch.Size([5, 3]), torch.Size([5]), True)
    """
    seed = _check_arguments(model, x, samples, seed, batch_size, task, tau)
    pick = _output_picker(output)

    device = _model_device(model, x.device)
    x = x.to(device)
    n, T = x.shape[0], samples
    rows = n * T
    chunk = int(batch_size) if batch_size is not None else max(n, 16384)
    starts = range(0, rows, chunk)

    fork = contextlib.nullcontext()
    if seed is not None:
        devices = [device] if device.type == "cuda" else []
        fork = torch.random.fork_rng(devices=devices)

    summary = Summary(task, n, T, from_logits, keep_samples)
    bar = _progress_bar(len(starts), progress)
    with fork, mc_dropout(model), torch.no_grad(), bar or contextlib.nullcontext():
        if seed is not None:
            torch.manual_seed(seed)
        job = bar.add_task("mc", total=len(starts)) if bar else None
        prefix, rest = _deterministic_prefix(model)
        h = prefix(x) if prefix is not None else x  # the same on every pass: computed once
        sizes = sorted({min(chunk, rows - s) for s in starts})
        steps = plan(rest, h, sizes) if n > 0 else None
        if steps is not None:
            width = max([h.shape[1]] + [s[1].shape[0] for s in steps if s[0] == "linear"])
            block = max(1, BLOCK_ELEMENTS // width)
            last_linear = steps[-1][0] == "linear"

            def emit(out, g, transposed):
                summary.add(out, g, transposed=transposed)

        for s in starts:
            e = min(s + chunk, rows)
            if steps is not None:
                run_blocks(steps, h, s, e - s, n, block, task == "classify" and last_linear, emit)
            else:
                rep = fill_rows(h.new_empty((e - s, *h.shape[1:])), h, s, n)  # pass-major rows
                summary.add(pick(rest(rep)), s)
            if bar:
                bar.advance(job)

    dtype = torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype
    dtype = dtype if dtype.is_floating_point else torch.float32
    result = summary.result(dtype, tau)
    identical = summary.identical

    if identical and n > 0:
        warnings.warn(
            f"mc_predict: all {T} passes gave identical outputs: no dropout was active. "
            "Functional dropout written as F.dropout(x, p, training=self.training) follows the "
            "parent module (in eval here); use a dropout module (torch.nn.Dropout or droplab's) "
            "so that mc_dropout can switch it on",
            RuntimeWarning,
            stacklevel=2,
        )
    return result


def _output_picker(output):
    """The function that takes the summarized tensor out of a model's output (``output``)."""
    if callable(output):
        return output
    if output is not None and not isinstance(output, (str, int)):
        raise TypeError(
            f"output must be None, a key, an index or a function, got {type(output).__name__}"
        )

    def pick(out):
        if isinstance(out, torch.Tensor):
            return out
        if output is not None:
            try:
                got = out[output]
            except (KeyError, IndexError, TypeError):
                raise ValueError(
                    f"output={output!r}: the model returned a {type(out).__name__} without it"
                ) from None
        elif isinstance(out, Mapping):  # dicts and Hugging Face ModelOutput (an OrderedDict)
            got = out["logits"] if "logits" in out else next(iter(out.values()), None)
        elif isinstance(out, (tuple, list)) and out:
            got = out[0]
        else:
            got = out
        if not isinstance(got, torch.Tensor):
            raise TypeError(
                f"the model returned a {type(out).__name__}; pass output= (a key, an index or "
                "a function) to pick the tensor to summarize"
            )
        return got

    return pick
