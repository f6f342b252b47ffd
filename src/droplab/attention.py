"""Attention dropout: droplab's mask on the attention probabilities of real models.

Transformers drop attention probabilities inside a fused call, not through a dropout module:
``F.scaled_dot_product_attention(q, k, v, dropout_p=...)`` (Hugging Face BERT/GPT-2/ViT with
``attn_implementation="sdpa"``, timm's ``Attention`` with ``fused_attn``), a bare
``F.dropout(attn, p, training)`` (the "eager" implementations) or
``F.multi_head_attention_forward`` (``torch.nn.MultiheadAttention`` and every layer built on it).
A model's ``p`` is read from a module and handed to the call, so swapping the module changes
nothing. This file gives those calls droplab's counter-based mask, for one model at a time:

- :func:`scaled_dot_product_attention`: ``F.scaled_dot_product_attention``'s math with droplab's
  dropout on the probabilities (seeded, fast kernels); PyTorch's own kernel where nothing is
  dropped, so eval outputs are bit for bit PyTorch's.
- :func:`route_attention` / :func:`unroute_attention`: find the modules that make such calls and
  wrap the forward of those instances (never a class, never a global) in a
  :class:`torch.overrides.TorchFunctionMode` that sends the calls to droplab while the forward
  runs. ``droplab.replace_dropout`` calls it.

Vaswani et al., "Attention Is All You Need", NeurIPS 2017 (dropout on the attention weights).
"""

from __future__ import annotations

import inspect
import math
import re
import threading
import types
import warnings

import torch
import torch.nn.functional as TF
from torch import nn
from torch.overrides import TorchFunctionMode

from droplab import functional as F
from droplab.kernels.rng import check_seed, derive_seed, derive_seed_tensor

__all__ = [
    "AttentionRouter",
    "attention_sites",
    "route_attention",
    "routed_modules",
    "scaled_dot_product_attention",
    "unroute_attention",
]

# ----------------------------------------------------------------------------------------------
# the function
# ----------------------------------------------------------------------------------------------


def scaled_dot_product_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attn_mask: torch.Tensor | None = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale: float | None = None,
    enable_gqa: bool = False,
    *,
    seed: int | None = None,
    backend: str = "auto",
) -> torch.Tensor:
    r"""``F.scaled_dot_product_attention`` with droplab's dropout on the attention probabilities.

    The arguments and their meaning are PyTorch's (``attn_mask`` boolean, ``True`` = attend, or
    float, added to the scores; ``is_causal``; ``scale``; ``enable_gqa``). With
    ``dropout_p == 0`` it *is* PyTorch's call, so eval outputs are bit for bit PyTorch's. With
    ``dropout_p > 0`` it computes PyTorch's reference math with an inverted droplab mask ``m``::

        A = softmax(q @ k^T * scale + bias)                 (B, ..., L, S)
        y = (A * m / (1 - p)) @ v                           m = dropout_mask(A.shape, p, seed)

    where ``bias`` is ``-inf`` where ``attn_mask`` (or the causal mask) forbids attention, and a
    row that attends to nothing gives zeros (PyTorch's "safe softmax"). The result agrees with
    PyTorch's math kernel under the same mask to float rounding (the order of the scale and the
    matmul differ), not bit for bit: PyTorch cannot take a given mask.

    Like PyTorch's function, it has no ``training`` argument: a caller in eval passes
    ``dropout_p=0``.

    Args:
        query: (N, ..., L, E).
        key: (N, ..., S, E).
        value: (N, ..., S, Ev).
        attn_mask: boolean or float, broadcastable to (N, ..., L, S). Default: ``None``
        dropout_p: probability of an attention probability to be zeroed. Default: 0.0
        is_causal: attend to earlier positions only; not with ``attn_mask``. Default: ``False``
        scale: the factor on ``q @ k^T``. Default: ``1 / sqrt(E)``
        enable_gqa: grouped-query attention: key/value heads shared by groups of query heads.
            Default: ``False``
        seed: fixes the mask (:func:`droplab.dropout_mask` of the probabilities' shape).
            Default: ``None`` (PyTorch's global RNG)
        backend: of :func:`droplab.dropout`. Default: ``"auto"``

    Shape:
        - Output: (N, ..., L, Ev).

    Examples::

        >>> q = torch.randn(2, 4, 8, 16)  # (N, heads, L, E)
        >>> y = scaled_dot_product_attention(q, q, q, dropout_p=0.1, seed=0)
        >>> y.shape
        torch.Size([2, 4, 8, 16])
        >>> torch.equal(y, scaled_dot_product_attention(q, q, q, dropout_p=0.1, seed=0))
        True
        >>> torch.equal(scaled_dot_product_attention(q, q, q),
        ...             torch.nn.functional.scaled_dot_product_attention(q, q, q))
        True
    """
    if dropout_p == 0:
        return TF.scaled_dot_product_attention(
            query, key, value, attn_mask, 0.0, is_causal, scale=scale, enable_gqa=enable_gqa
        )
    if is_causal and attn_mask is not None:
        # PyTorch's text for the same mistake
        raise RuntimeError(
            "_scaled_dot_product_attention: Explicit attn_mask should not be set when "
            "is_causal=True"
        )
    L, S = query.size(-2), key.size(-2)
    factor = 1.0 / math.sqrt(query.size(-1)) if scale is None else scale
    if enable_gqa and key.dim() >= 3 and query.size(-3) != key.size(-3):
        groups = query.size(-3) // key.size(-3)
        key = key.repeat_interleave(groups, dim=-3)
        value = value.repeat_interleave(groups, dim=-3)
    # the scale on q (L x E), not on the scores (L x S): one pass less over the largest tensor
    scores = (query * factor) @ key.transpose(-2, -1)  # (N, ..., L, S)
    # masks are added as a bias of 0 and -inf, as in PyTorch's reference: in place on the
    # matmul's fresh output, and with no backward pass of their own (a masked_fill_ has one)
    masked = False  # a causal row always keeps its first position: only attn_mask empties rows
    if is_causal:
        scores.add_(_causal_bias(L, S, scores.dtype, scores.device))
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            bias = torch.zeros(attn_mask.shape, dtype=scores.dtype, device=scores.device)
            attn_mask = bias.masked_fill_(~attn_mask, float("-inf"))
        # in place unless the mask broadcasts the scores to a larger shape
        grows = torch.broadcast_shapes(scores.shape, attn_mask.shape) != scores.shape
        scores = scores + attn_mask if grows else scores.add_(attn_mask)
        masked = True
    # a row that may attend to nothing gives zeros, as in PyTorch's math kernel, not NaN
    probs = torch._safe_softmax(scores, -1) if masked else scores.softmax(-1)
    probs = F.dropout(probs, dropout_p, True, seed=seed, backend=backend)
    return probs @ value


def _causal_bias(L: int, S: int, dtype: torch.dtype, device) -> torch.Tensor:
    """(L, S): 0 where query ``i`` may attend to key ``j <= i``, ``-inf`` above the diagonal
    (PyTorch's top-left causal mask)."""
    future = torch.ones(L, S, dtype=torch.bool, device=device).triu_(1)
    return torch.zeros(L, S, dtype=dtype, device=device).masked_fill_(future, float("-inf"))


# ----------------------------------------------------------------------------------------------
# the router: one per attention module, active while that module's forward runs
# ----------------------------------------------------------------------------------------------

# calls that draw random numbers droplab cannot take over: named in a warning when a routed
# forward makes them in training
_UNROUTABLE = {
    torch.bernoulli: "torch.bernoulli",
    torch.Tensor.bernoulli_: "Tensor.bernoulli_",
    torch.rand: "torch.rand",
    torch.rand_like: "torch.rand_like",
    torch.randn_like: "torch.randn_like",
    TF.dropout1d: "F.dropout1d",
    TF.dropout2d: "F.dropout2d",
    TF.dropout3d: "F.dropout3d",
    TF.alpha_dropout: "F.alpha_dropout",
    TF.feature_alpha_dropout: "F.feature_alpha_dropout",
}


class AttentionRouter(TorchFunctionMode):
    """Sends one module's attention-dropout calls to droplab while that module's forward runs.

    Active only inside the forward of the module it was installed on (by
    :func:`route_attention`), it intercepts:

    - ``F.scaled_dot_product_attention(..., dropout_p=p)`` with ``p > 0``: droplab's
      :func:`scaled_dot_product_attention`; with ``p == 0`` PyTorch's own call, untouched;
    - ``F.dropout(x, p, training)`` / ``torch.dropout``: :func:`droplab.dropout`;
    - ``F.multi_head_attention_forward``: PyTorch's own code, run with the two calls above;

    and passes every other call through. With ``seed=s``, routed call ``k`` of this module
    (``k = 0, 1, ...``, counted in ``step``) uses ``derive_seed(s, k)``, as a seeded
    ``droplab.Dropout`` does; without a seed, masks come from PyTorch's global RNG. Dropout here
    is always inverted (the model passes ``p`` only in training).
    """

    def __init__(self, path: str, *, seed: int | None = None, backend: str = "auto") -> None:
        super().__init__()
        self.path = path  # the module's name in the model, for warnings
        self.seed = None if seed is None else check_seed(seed)
        # routed calls so far (seeded masks), read and set as the int `step`: a 0-d tensor as in
        # droplab's modules, so that a compiler may take it as a graph input
        self._step = torch.zeros((), dtype=torch.int64)
        self.backend = F.check_backend(backend)
        self.warned: set[str] = set()

    @property
    def step(self) -> int:
        """Routed calls so far (each seeded call ``k`` uses ``derive_seed(seed, k)``)."""
        return int(self._step)

    @step.setter
    def step(self, value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"step must be an int >= 0, got {value!r}")
        self._step.fill_(value)

    def _next_seed(self):
        if self.seed is None:
            return None
        if torch.compiler.is_compiling():
            seed = derive_seed_tensor(self.seed, self._step)  # traced: no recompile per step
        else:
            seed = derive_seed(self.seed, int(self._step))
        self._step.add_(1)
        return seed

    def sdpa(self, query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, **kw):
        if dropout_p == 0:
            return TF.scaled_dot_product_attention(
                query, key, value, attn_mask, 0.0, is_causal, **kw
            )
        return scaled_dot_product_attention(
            query,
            key,
            value,
            attn_mask,
            dropout_p,
            is_causal,
            seed=self._next_seed(),
            backend=self.backend,
            **kw,
        )

    def dropout(self, input, p=0.5, training=True, inplace=False):
        if not training or p == 0:
            return input
        return F.dropout(
            input, p, True, seed=self._next_seed(), backend=self.backend, inplace=inplace
        )

    def torch_dropout(self, input, p, train):
        return self.dropout(input, p, train)

    def multi_head_attention_forward(self, *args, **kwargs):
        routers = _routers()
        routers.append(self)  # what the copy's SDPA and dropout call back into
        try:
            return _MHA(*args, **kwargs)
        finally:
            routers.pop()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is TF.scaled_dot_product_attention:
            return self.sdpa(*args, **kwargs)
        if func is TF.dropout:
            return self.dropout(*args, **kwargs)
        if func is torch.dropout:
            return self.torch_dropout(*args, **kwargs)
        if func is TF.multi_head_attention_forward:
            return self.multi_head_attention_forward(*args, **kwargs)
        name = _UNROUTABLE.get(func)
        # with gradients on (training), not at inference, where such draws are rarely dropout
        if name is not None and name not in self.warned and torch.is_grad_enabled():
            self.warned.add(name)
            warnings.warn(
                f"{self.path} calls {name} in its forward: random numbers droplab cannot "
                "route; that dropout still uses PyTorch's RNG",
                stacklevel=2,
            )
        return func(*args, **kwargs)

    def __repr__(self) -> str:
        seed = "" if self.seed is None else f", seed={self.seed}"
        return f"AttentionRouter({self.path!r}{seed}, step={self.step})"


# torch's multi_head_attention_forward with its global names SDPA and dropout sent to the router
# running it (the innermost of this thread's routers): a private copy of the function, never a
# change to torch.nn.functional
_LOCAL = threading.local()
_TRACING: list[AttentionRouter] = []  # while a compiler traces (one frame at a time)


def _routers() -> list[AttentionRouter]:
    if torch.compiler.is_compiling():
        return _TRACING  # a plain list the tracer follows; the graph keeps what it resolved
    if not hasattr(_LOCAL, "stack"):
        _LOCAL.stack = []
    return _LOCAL.stack


def _mha_sdpa(*args, **kwargs):
    return _routers()[-1].sdpa(*args, **kwargs)


def _mha_dropout(*args, **kwargs):
    return _routers()[-1].dropout(*args, **kwargs)


def _private_mha() -> types.FunctionType:
    fn = TF.multi_head_attention_forward
    scope = {**fn.__globals__, "scaled_dot_product_attention": _mha_sdpa, "dropout": _mha_dropout}
    copy = types.FunctionType(fn.__code__, scope, fn.__name__, fn.__defaults__, fn.__closure__)
    copy.__kwdefaults__ = fn.__kwdefaults__
    return copy


_MHA = _private_mha()


class _RoutedForward:
    """The instance-level ``forward`` of a routed module: its own forward, inside its router."""

    def __init__(self, module: nn.Module, router: AttentionRouter) -> None:
        self.module = module
        self.router = router
        # a forward someone else set on the instance (kept, and restored on unroute)
        self.inner = module.__dict__.get("forward")

    def __call__(self, *args, **kwargs):
        with self.router:
            if self.inner is not None:
                return self.inner(*args, **kwargs)
            return type(self.module).forward(self.module, *args, **kwargs)


# ----------------------------------------------------------------------------------------------
# finding and routing attention modules
# ----------------------------------------------------------------------------------------------

_ATTENTION_FUNCTIONS = ("dropout", "scaled_dot_product_attention", "multi_head_attention_forward")
_RANDOM_FUNCTIONS = (
    "dropout1d",
    "dropout2d",
    "dropout3d",
    "alpha_dropout",
    "feature_alpha_dropout",
)
_forward_cache: dict[type, tuple[bool, str | None]] = {}


def _forward_calls(cls: type) -> tuple[bool, str | None]:
    """(whether ``cls.forward`` makes an attention-dropout call, the random draw it makes).

    Read from the source, with the names of the forward's module resolved, so that
    ``import torch.nn.functional as TF`` or ``from torch.nn.functional import
    scaled_dot_product_attention`` count too. Hugging Face dispatches through a local
    ``attention_interface`` (to an SDPA or an "eager" function that calls ``F.dropout``).
    """
    if cls in _forward_cache:
        return _forward_cache[cls]
    forward = getattr(cls, "forward", None)
    try:
        src = inspect.getsource(forward)
    except (OSError, TypeError):
        src = ""  # no source to read (a C extension, an interactive session)
    # comments and docstrings are not calls
    src = re.sub(r"#[^\n]*", "", src)
    src = re.sub(r'"""[\s\S]*?"""|\'\'\'[\s\S]*?\'\'\'', "", src)
    scope = getattr(forward, "__globals__", {})
    modules = {"F", "functional", "nn.functional", "torch.nn.functional"}
    modules |= {k for k, v in scope.items() if v is TF}
    names = "|".join(re.escape(m) for m in sorted(modules))
    bare = [k for k, v in scope.items() if v in (TF.dropout, TF.scaled_dot_product_attention)]
    attention = [rf"(?<![\w.])(?:{names})\.(?:{'|'.join(_ATTENTION_FUNCTIONS)})\s*\("]
    attention += [r"(?<![\w.])torch\.dropout\s*\(", r"\battention_interface\s*\("]
    attention += [rf"(?<![\w.]){re.escape(k)}\s*\(" for k in bare]
    found = bool(re.search("|".join(attention), src))
    random = re.search(
        rf"(?<![\w.])(?:{names})\.(?:{'|'.join(_RANDOM_FUNCTIONS)})(?=\s*\()|"
        r"(?<![\w.])torch\.(?:rand|rand_like|randn_like|bernoulli)(?=\s*\()|"
        r"\.bernoulli_?(?=\s*\()",
        src,
    )
    _forward_cache[cls] = (found, random.group(0).lstrip(".") if random else None)
    return _forward_cache[cls]


def _is_droplab(module: nn.Module) -> bool:
    return type(module).__module__.split(".")[0] == "droplab"


def attention_sites(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The modules of ``model`` whose own forward makes an attention-dropout call, in order.

    ``torch.nn.MultiheadAttention`` (and subclasses), and any module whose class's ``forward``
    source calls ``F.scaled_dot_product_attention``, ``F.dropout``, ``torch.dropout``,
    ``F.multi_head_attention_forward`` or Hugging Face's ``attention_interface``. droplab's own
    modules and torch's dropout modules (``replace_dropout`` swaps those) are not sites; a
    subclass of ``torch.nn.Dropout`` is.
    """
    sites = []
    for name, module in model.named_modules():
        if _is_droplab(module) or type(module).__module__ == nn.Dropout.__module__:
            continue
        if isinstance(module, nn.MultiheadAttention) or _forward_calls(type(module))[0]:
            sites.append((name, module))
    return sites


def unreachable_dropout(model: nn.Module) -> list[str]:
    """Lines naming each random draw of ``model`` that routing cannot reach, read from source.

    A module (not droplab's) whose forward calls ``torch.rand``, ``rand_like``, ``bernoulli``
    or a functional dropout variant other than ``F.dropout``.
    """
    found = []
    for name, module in model.named_modules():
        if _is_droplab(module):
            continue
        call = _forward_calls(type(module))[1]
        if call:
            found.append(f"{name or type(module).__name__} ({type(module).__name__}) calls {call}")
    return found


def routed_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The modules of ``model`` routed by :func:`route_attention`, with their names."""
    return [
        (name, m)
        for name, m in model.named_modules()
        if isinstance(m.__dict__.get("forward"), _RoutedForward)
    ]


def route_attention(
    model: nn.Module, *, seed: int | None = None, backend: str = "auto", first: int = 0
) -> list[AttentionRouter]:
    r"""Give the attention dropout of ``model`` droplab's masks, for this model instance only.

    Each module found by :func:`attention_sites` gets an :class:`AttentionRouter` and an
    instance-level ``forward`` that runs its own forward inside that router. Nothing global
    changes: other instances of the same class, other models and the ``torch`` functions are
    untouched; parameters, buffers and the state_dict are unchanged; in eval (``dropout_p=0``)
    PyTorch's own kernels run, so outputs are bit for bit the same. Undo with
    :func:`unroute_attention`. A module already routed is routed again with the new settings.

    Args:
        model: the model to route, in place.
        seed: with ``seed=s``, the ``i``-th site's router gets ``derive_seed(s, first + i)``.
            Default: ``None`` (PyTorch's global RNG)
        backend: of :func:`droplab.dropout`. Default: ``"auto"``
        first: the index of the first site's seed (``replace_dropout`` numbers the dropout
            modules it swapped first). Default: 0

    Returns:
        the routers, in ``model.named_modules()`` order (``router.path`` names the module).

    Examples::

        >>> mha = torch.nn.MultiheadAttention(8, 2, dropout=0.1, batch_first=True)
        >>> route_attention(mha, seed=0)  # doctest: +ELLIPSIS
        [AttentionRouter('', seed=..., step=0)]
        >>> x = torch.randn(2, 5, 8)
        >>> torch.equal(mha(x, x, x)[0], mha(x, x, x)[0])  # steps 0 and 1 differ
        False
        >>> unroute_attention(mha)
        ['']
    """
    if seed is not None:
        seed = check_seed(seed)
    F.check_backend(backend)
    unroute_attention(model)
    routers = []
    for i, (name, module) in enumerate(attention_sites(model)):
        s = None if seed is None else derive_seed(seed, first + i)
        router = AttentionRouter(name, seed=s, backend=backend)
        # nn.Module.__setattr__ keeps non-module values in the instance __dict__
        module.forward = _RoutedForward(module, router)
        routers.append(router)
    return routers


def unroute_attention(model: nn.Module) -> list[str]:
    """Undo :func:`route_attention`: every routed module of ``model`` gets its forward back.

    Returns the names of the modules restored (none if nothing was routed).
    """
    restored = []
    for name, module in routed_modules(model):
        routed = module.__dict__.pop("forward")
        if routed.inner is not None:
            module.forward = routed.inner
        restored.append(name)
    return restored
