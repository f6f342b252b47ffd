"""Optimizers of the NumPy engine: ``torch.optim``'s update rules, defaults and state, in NumPy.

Each optimizer takes parameters (or torch-style parameter groups, ``[{"params": [...], "lr":
...}, ...]``), and offers ``zero_grad()``, ``step()``, ``state_dict()`` and ``load_state_dict()``.
The update of every parameter ``w`` with gradient ``g`` at step ``t`` (from 1) is, exactly as in
``torch.optim`` (single-tensor path, ``maximize=False``):

SGD (``lr``, ``momentum=0``, ``dampening=0``, ``weight_decay=0``, ``nesterov=False``)::

    g <- g + weight_decay * w
    b <- g                                   (t = 1: the buffer starts at the first gradient)
    b <- momentum * b + (1 - dampening) * g  (t > 1)
    g <- g + momentum * b  if nesterov  else  b
    w <- w - lr * g

Adagrad (``lr=1e-2``, ``lr_decay=0``, ``weight_decay=0``, ``initial_accumulator_value=0``,
``eps=1e-10``)::

    g <- g + weight_decay * w;   s <- s + g^2
    w <- w - lr / (1 + (t - 1) lr_decay) * g / (sqrt(s) + eps)

RMSprop (``lr=1e-2``, ``alpha=0.99``, ``eps=1e-8``, ``weight_decay=0``, ``momentum=0``,
``centered=False``)::

    g <- g + weight_decay * w;   v <- alpha v + (1 - alpha) g^2
    centered: a <- alpha a + (1 - alpha) g,  d = sqrt(v - a^2) + eps;  else d = sqrt(v) + eps
    momentum > 0: b <- momentum b + g / d,  w <- w - lr b;   else  w <- w - lr g / d

Adam (``lr=1e-3``, ``betas=(0.9, 0.999)``, ``eps=1e-8``, ``weight_decay=0``, ``amsgrad=False``)::

    g <- g + weight_decay * w
    m <- beta1 m + (1 - beta1) g;   v <- beta2 v + (1 - beta2) g^2;   amsgrad: v_max <- max(v_max, v)
    w <- w - lr / (1 - beta1^t) * m / (sqrt(v or v_max) / sqrt(1 - beta2^t) + eps)

The tutorials' conventions, and how to get them here:

- Momentum as an exponential average, ``D_t = beta D_{t-1} + (1 - beta) g_t``: that is
  ``SGD(momentum=beta, dampening=beta)``, except at the first step, where torch starts the buffer
  at ``g_1`` (the tutorial's ``D_0 = 0`` gives ``(1 - beta) g_1``, a smaller first step that bias
  correction would undo).
- AdaGrad / RMSProp written ``lr * g / (sqrt(s) + 1e-6)``: pass ``eps=1e-6`` (torch's defaults are
  ``1e-10`` for Adagrad and ``1e-8`` for RMSprop; RMSprop's ``alpha`` defaults to 0.99, the
  tutorial's ``beta`` often to 0.9).
"""

from __future__ import annotations

import copy

import numpy as np

from droplab.scratch.module import Parameter


def _lerp(a, b, w: float):
    """``torch.lerp(a, b, w)`` element for element, to keep Adam's rounding identical."""
    return a + w * (b - a) if w < 0.5 else b - (b - a) * (1 - w)


class Optimizer:
    """Parameter groups, per-parameter state and checkpoints, as ``torch.optim.Optimizer``."""

    def __init__(self, params, defaults: dict) -> None:
        self.defaults = dict(defaults)
        params = list(params)
        if not params:
            raise ValueError("optimizer got an empty parameter list")
        groups = params if isinstance(params[0], dict) else [{"params": params}]
        self.param_groups: list[dict] = []
        for group in groups:
            self.add_param_group(group)
        self.state: dict[int, dict] = {}  # id(param) -> state

    def add_param_group(self, group: dict) -> None:
        group = dict(group)
        ps = group["params"]
        group["params"] = [ps] if isinstance(ps, Parameter) else list(ps)
        for p in group["params"]:
            if not isinstance(p, Parameter):
                raise TypeError(f"optimizer can only optimize Parameters, got {type(p).__name__}")
        for key, value in self.defaults.items():
            group.setdefault(key, value)
        self.param_groups.append(group)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Set every parameter's gradient to zero.

        ``set_to_none`` is accepted for torch's signature; gradients here are always arrays.
        """
        for group in self.param_groups:
            for p in group["params"]:
                p.grad[...] = 0

    def step(self) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                state = self.state.setdefault(id(p), {})
                self._update(p, p.grad, state, group)

    def _update(self, p: Parameter, grad, state: dict, group: dict) -> None:
        raise NotImplementedError

    # -- checkpoints ----------------------------------------------------------------------------

    def _params(self) -> list[Parameter]:
        return [p for g in self.param_groups for p in g["params"]]

    def state_dict(self) -> dict:
        """``{"state": {index: {name: array or number}}, "param_groups": [...]}``, torch's layout
        (parameters by their position across groups), as NumPy arrays and Python numbers."""
        index = {id(p): i for i, p in enumerate(self._params())}
        state = {
            index[pid]: {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in s.items()}
            for pid, s in self.state.items()
            if pid in index
        }
        groups, start = [], 0
        for g in self.param_groups:
            packed = {k: copy.deepcopy(v) for k, v in g.items() if k != "params"}
            packed["params"] = list(range(start, start + len(g["params"])))
            start += len(g["params"])
            groups.append(packed)
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore hyper-parameters and state saved by ``state_dict`` (same parameter layout)."""
        groups = state_dict["param_groups"]
        if len(groups) != len(self.param_groups) or any(
            len(a["params"]) != len(b["params"]) for a, b in zip(groups, self.param_groups)
        ):
            raise ValueError("loaded state dict has a different parameter layout")
        params = self._params()
        for saved, group in zip(groups, self.param_groups):
            for k, v in saved.items():
                if k != "params":
                    group[k] = copy.deepcopy(v)
        self.state = {}
        for i, s in state_dict["state"].items():
            p = params[int(i)]
            self.state[id(p)] = {
                k: (np.array(v, dtype=p.data.dtype) if isinstance(v, np.ndarray) else v)
                for k, v in s.items()
            }

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} ("]
        for i, g in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            lines += [f"    {k}: {v}" for k, v in sorted(g.items()) if k != "params"]
        return "\n".join(lines) + "\n)"


def _check_lr(lr) -> None:
    if lr < 0.0:
        raise ValueError(f"Invalid learning rate: {lr}")


def _check_nonneg(name: str, value, label: str | None = None) -> None:
    if not 0.0 <= value:
        raise ValueError(f"Invalid {label or name} value: {value}")


class SGD(Optimizer):
    """Stochastic gradient descent with momentum (``torch.optim.SGD``; see the module docstring).

    Examples::

        >>> from droplab.scratch import Linear
        >>> layer = Linear(3, 2, rng=0)
        >>> opt = SGD(layer.parameters(), lr=0.5)
        >>> opt.zero_grad(); opt.step()
    """

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        momentum: float = 0,
        dampening: float = 0,
        weight_decay: float = 0,
        nesterov: bool = False,
        *,
        maximize: bool = False,
    ) -> None:
        _check_lr(lr)
        _check_nonneg("momentum", momentum)
        _check_nonneg("weight_decay", weight_decay)
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        defaults = dict(
            lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
            nesterov=nesterov, maximize=maximize,
        )  # fmt: skip
        super().__init__(params, defaults)

    def _update(self, p, grad, state, group):
        lr, momentum, wd = group["lr"], group["momentum"], group["weight_decay"]
        if group["maximize"]:
            grad = -grad
        if wd != 0:
            grad = grad + wd * p.data
        if momentum != 0:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = np.array(grad, copy=True)
            else:
                buf *= momentum
                buf += (1 - group["dampening"]) * grad
            grad = grad + momentum * buf if group["nesterov"] else buf
        p.data -= lr * grad


class Adagrad(Optimizer):
    """AdaGrad (Duchi et al. 2011) as ``torch.optim.Adagrad`` (see the module docstring)."""

    def __init__(
        self,
        params,
        lr: float = 1e-2,
        lr_decay: float = 0,
        weight_decay: float = 0,
        initial_accumulator_value: float = 0,
        eps: float = 1e-10,
        *,
        maximize: bool = False,
    ) -> None:
        _check_lr(lr)
        _check_nonneg("lr_decay", lr_decay)
        _check_nonneg("weight_decay", weight_decay)
        _check_nonneg("initial_accumulator_value", initial_accumulator_value)
        _check_nonneg("epsilon", eps)
        defaults = dict(
            lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
            initial_accumulator_value=initial_accumulator_value, eps=eps, maximize=maximize,
        )  # fmt: skip
        super().__init__(params, defaults)
        for group in self.param_groups:  # torch creates the state in the constructor
            for p in group["params"]:
                self.state[id(p)] = {
                    "step": 0.0,
                    "sum": np.full_like(p.data, group["initial_accumulator_value"]),
                }

    def _update(self, p, grad, state, group):
        state["step"] += 1
        step = state["step"]
        if group["maximize"]:
            grad = -grad
        if group["weight_decay"] != 0:
            grad = grad + group["weight_decay"] * p.data
        clr = group["lr"] / (1 + (step - 1) * group["lr_decay"])
        state["sum"] += grad * grad
        std = np.sqrt(state["sum"])
        std += group["eps"]
        p.data -= clr * grad / std  # addcdiv: (value * g) / std


class RMSprop(Optimizer):
    """RMSProp (Hinton's lecture 6e) as ``torch.optim.RMSprop`` (see the module docstring)."""

    def __init__(
        self,
        params,
        lr: float = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0,
        momentum: float = 0,
        centered: bool = False,
        *,
        maximize: bool = False,
    ) -> None:
        _check_lr(lr)
        _check_nonneg("eps", eps, "epsilon")
        _check_nonneg("momentum", momentum)
        _check_nonneg("weight_decay", weight_decay)
        _check_nonneg("alpha", alpha)
        defaults = dict(
            lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum,
            centered=centered, maximize=maximize,
        )  # fmt: skip
        super().__init__(params, defaults)

    def _update(self, p, grad, state, group):
        if not state:
            state["step"] = 0.0
            state["square_avg"] = np.zeros_like(p.data)
            if group["momentum"] > 0:
                state["momentum_buffer"] = np.zeros_like(p.data)
            if group["centered"]:
                state["grad_avg"] = np.zeros_like(p.data)
        state["step"] += 1
        alpha = group["alpha"]
        if group["maximize"]:
            grad = -grad
        if group["weight_decay"] != 0:
            grad = grad + group["weight_decay"] * p.data
        square_avg = state["square_avg"]
        square_avg *= alpha
        square_avg += (1 - alpha) * grad * grad  # addcmul: (value * g) * g
        if group["centered"]:
            state["grad_avg"] = _lerp(state["grad_avg"], grad, 1 - alpha)
            avg = np.sqrt(square_avg - state["grad_avg"] * state["grad_avg"])
        else:
            avg = np.sqrt(square_avg)
        avg += group["eps"]
        if group["momentum"] > 0:
            buf = state["momentum_buffer"]
            buf *= group["momentum"]
            buf += grad / avg
            p.data -= group["lr"] * buf
        else:
            p.data -= group["lr"] * grad / avg  # addcdiv: (value * g) / avg


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015) as ``torch.optim.Adam`` (see the module docstring)."""

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
    ) -> None:
        _check_lr(lr)
        _check_nonneg("eps", eps, "epsilon")
        if not 0.0 <= betas[0] < 1.0:
            raise ValueError(f"Invalid beta parameter at index 0: {betas[0]}")
        if not 0.0 <= betas[1] < 1.0:
            raise ValueError(f"Invalid beta parameter at index 1: {betas[1]}")
        _check_nonneg("weight_decay", weight_decay)
        defaults = dict(
            lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
            maximize=maximize,
        )  # fmt: skip
        super().__init__(params, defaults)

    def _update(self, p, grad, state, group):
        if not state:
            state["step"] = 0.0
            state["exp_avg"] = np.zeros_like(p.data)
            state["exp_avg_sq"] = np.zeros_like(p.data)
            if group["amsgrad"]:
                state["max_exp_avg_sq"] = np.zeros_like(p.data)
        beta1, beta2 = group["betas"]
        state["step"] += 1
        step = state["step"]
        if group["maximize"]:
            grad = -grad
        if group["weight_decay"] != 0:
            grad = grad + group["weight_decay"] * p.data
        state["exp_avg"] = exp_avg = _lerp(state["exp_avg"], grad, 1 - beta1)
        exp_avg_sq = state["exp_avg_sq"]
        exp_avg_sq *= beta2
        exp_avg_sq += (1 - beta2) * grad * grad  # addcmul: (value * g) * g
        bias_correction1 = 1 - beta1**step
        bias_correction2 = 1 - beta2**step
        step_size = group["lr"] / bias_correction1
        bias_correction2_sqrt = bias_correction2**0.5
        if group["amsgrad"]:
            np.maximum(state["max_exp_avg_sq"], exp_avg_sq, out=state["max_exp_avg_sq"])
            denom = np.sqrt(state["max_exp_avg_sq"]) / bias_correction2_sqrt
        else:
            denom = np.sqrt(exp_avg_sq) / bias_correction2_sqrt
        denom += group["eps"]
        p.data -= step_size * exp_avg / denom  # addcdiv: (value * m) / denom
