"""The bookkeeping of the NumPy engine: ``Parameter``, ``Module`` and ``Sequential``.

A ``Module`` works like a ``torch.nn.Module`` whose autograd has been written out by hand:
``forward(X)`` computes the output and keeps what its backward needs, ``backward(dLdy)`` returns
``dLdX`` and *adds* (``+=``) the gradient of every parameter into ``param.grad``, as autograd
does. Parameters and sub-modules assigned as attributes are registered in order, so
``named_parameters()`` and ``state_dict()`` use torch's names (``"0.weight"``, ``"0.bias"``, ...)
and a torch model's ``state_dict()`` loads into its NumPy twin as is.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np


class Parameter:
    """A trainable array: ``data`` and its gradient ``grad`` (same shape and dtype).

    ``grad`` starts at zeros and accumulates over ``backward`` calls until ``zero_grad()``, like
    ``torch.nn.Parameter.grad`` (which is ``None`` where this one is zeros).

    Examples::

        >>> w = Parameter(np.ones((2, 3)))
        >>> w.grad.shape
        (2, 3)
    """

    __slots__ = ("data", "grad")

    def __init__(self, data) -> None:
        self.data = np.array(data, copy=True)
        self.grad = np.zeros_like(self.data)

    @property
    def shape(self) -> tuple[int, ...]:
        return self.data.shape

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype

    def zero_grad(self) -> None:
        self.grad[...] = 0

    def astype(self, dtype) -> Parameter:
        """Cast ``data`` and ``grad`` to ``dtype`` in place (this object); returns ``self``."""
        self.data = self.data.astype(dtype)
        self.grad = self.grad.astype(dtype)
        return self

    def __repr__(self) -> str:
        return f"Parameter(shape={self.data.shape}, dtype={self.data.dtype})"


class Module:
    """The base of every layer: bookkeeping (parameters, children, train/eval) and the protocol.

    Subclasses implement ``forward(X)`` and ``backward(dLdy, *, input_grad=True)``. ``backward``
    returns ``dLdX`` (or ``None`` when ``input_grad=False``: the first layer of a network need not
    compute the gradient of its input, as torch skips it for inputs that do not require grad),
    accumulates parameter gradients with ``+=`` and never modifies ``dLdy`` or any input.
    """

    training: bool

    def __init__(self) -> None:
        object.__setattr__(self, "_parameters", {})
        object.__setattr__(self, "_modules", {})
        object.__setattr__(self, "training", True)

    def __setattr__(self, name: str, value) -> None:
        if "_parameters" not in self.__dict__:
            raise AttributeError("call Module.__init__() before assigning attributes")
        self._parameters.pop(name, None)
        self._modules.pop(name, None)
        if isinstance(value, Parameter):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        object.__setattr__(self, name, value)

    # -- the protocol ---------------------------------------------------------------------------

    def forward(self, X):
        raise NotImplementedError

    def backward(self, dLdy, *, input_grad: bool = True):
        raise NotImplementedError

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    # -- bookkeeping ----------------------------------------------------------------------------

    def children(self) -> Iterator[Module]:
        yield from self._modules.values()

    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, Module]]:
        yield prefix, self
        for name, child in self._modules.items():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self) -> Iterator[Module]:
        for _, m in self.named_modules():
            yield m

    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, Parameter]]:
        for name, p in self._parameters.items():
            yield (f"{prefix}.{name}" if prefix else name), p
        for name, child in self._modules.items():
            yield from child.named_parameters(f"{prefix}.{name}" if prefix else name)

    def parameters(self) -> Iterator[Parameter]:
        for _, p in self.named_parameters():
            yield p

    def train(self, mode: bool = True) -> Module:
        """Set training mode (dropout samples) on this module and every child; returns ``self``."""
        for m in self.modules():
            object.__setattr__(m, "training", bool(mode))
        return self

    def eval(self) -> Module:
        """Set evaluation mode; the same as ``train(False)``."""
        return self.train(False)

    def zero_grad(self) -> None:
        for p in self.parameters():
            p.zero_grad()

    def astype(self, dtype) -> Module:
        """Cast every parameter to ``dtype`` in place; returns ``self`` (torch's ``.to(dtype)``)."""
        for p in self.parameters():
            p.astype(dtype)
        for m in self.modules():
            if "dtype" in m.__dict__:
                object.__setattr__(m, "dtype", np.dtype(dtype))
        return self

    def state_dict(self) -> dict[str, np.ndarray]:
        """A copy of every parameter, by torch's dotted names (``{"0.weight": array, ...}``)."""
        return {name: p.data.copy() for name, p in self.named_parameters()}

    def load_state_dict(self, state_dict, strict: bool = True) -> None:
        """Copy arrays (or anything ``np.asarray`` accepts, torch tensors included) into the
        parameters of the same names, keeping each parameter's dtype.

        With ``strict``, missing or unexpected names and shape mismatches are a ``KeyError`` /
        ``ValueError`` naming them.
        """
        params = dict(self.named_parameters())
        missing = [k for k in params if k not in state_dict]
        unexpected = [k for k in state_dict if k not in params]
        if strict and (missing or unexpected):
            raise KeyError(f"state_dict mismatch: missing {missing}, unexpected {unexpected}")
        for name, p in params.items():
            if name not in state_dict:
                continue
            value = np.asarray(state_dict[name])
            if value.shape != p.data.shape:
                raise ValueError(
                    f"shape mismatch for {name}: the model has {p.data.shape}, "
                    f"the state_dict {value.shape}"
                )
            p.data[...] = value

    # -- printing -------------------------------------------------------------------------------

    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        head = f"{type(self).__name__}({self.extra_repr()}"
        if not self._modules:
            return head + ")"
        lines = [head]
        for name, child in self._modules.items():
            lines.append("  (" + name + "): " + repr(child).replace("\n", "\n  "))
        return "\n".join(lines) + "\n)"


class Sequential(Module):
    """Modules applied in order; ``backward`` runs them in reverse.

    Children are named ``"0"``, ``"1"``, ... as in ``torch.nn.Sequential``.

    Examples::

        >>> from droplab.scratch import Linear, ReLU
        >>> net = Sequential(Linear(4, 3), ReLU(), Linear(3, 2))
        >>> net(np.ones((5, 4), dtype=np.float32)).shape
        (5, 2)
        >>> [name for name, _ in net.named_parameters()]
        ['0.weight', '0.bias', '2.weight', '2.bias']
    """

    def __init__(self, *layers: Module) -> None:
        super().__init__()
        for i, layer in enumerate(layers):
            if not isinstance(layer, Module):
                raise TypeError(f"Sequential takes Modules, got {type(layer).__name__} at {i}")
            setattr(self, str(i), layer)

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(self._modules.values())

    def __getitem__(self, i: int) -> Module:
        return list(self._modules.values())[i]

    def forward(self, X):
        for layer in self._modules.values():
            X = layer.forward(X)
        return X

    def backward(self, dLdy, *, input_grad: bool = True):
        """Backpropagate ``dLdy`` through every layer, last first; returns ``dLdX``.

        With ``input_grad=False`` the first layer skips the gradient of the network's input
        (``None`` is returned): a whole matrix product saved per step in training.
        """
        layers = list(self._modules.values())
        for i in range(len(layers) - 1, -1, -1):
            dLdy = layers[i].backward(dLdy, input_grad=input_grad or i > 0)
        return dLdy
