"""PyTorch's own dropout test cases, run on torch and on droplab side by side.

Two sources: the OpInfo sample inputs of ``nn.functional.dropout*`` that ship with the installed
torch (``torch.testing._internal.common_methods_invocations.op_db``), and the cases of PyTorch's
``test/nn/test_dropout.py`` (rewritten here: that file does not ship with the wheel). Each
sample is run through the torch function and the droplab one after the same
``torch.manual_seed``: shape, dtype and strides agree; eval and ``p = 0`` return the input;
``p = 1`` returns zeros; channel and alpha dropout give torch's bits in every dtype; element-wise
dropout (a different random stream, documented) keeps exactly ``0`` or ``x / (1 - p)``. Every
place droplab differs on purpose is pinned here and listed in docs/variants.md.
"""

from __future__ import annotations

import itertools
import math
import sys
import types
import unittest

import pytest
import torch
import torch.nn.functional as TF
from torch import nn

import droplab
from droplab import functional as F

# torch.testing._internal imports expecttest (a test-only dependency of PyTorch) at import
# time for a TestCase base class it never uses here
sys.modules.setdefault("expecttest", types.SimpleNamespace(TestCase=unittest.TestCase))
from torch.testing._internal.common_methods_invocations import op_db  # noqa: E402

DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)

# OpInfo name -> (torch function, droplab function, torch's default of `training`)
OPS = {
    "nn.functional.dropout": (TF.dropout, F.dropout, True),
    "nn.functional.dropout2d": (TF.dropout2d, F.dropout2d, True),
    "nn.functional.dropout3d": (TF.dropout3d, F.dropout3d, True),
    "nn.functional.alpha_dropout": (TF.alpha_dropout, F.alpha_dropout, False),
    "nn.functional.feature_alpha_dropout": (
        TF.feature_alpha_dropout,
        F.feature_alpha_dropout,
        False,
    ),
}
# the same mask stream as torch (new_empty(S).bernoulli_(1 - p)): equal bits after manual_seed
SAME_STREAM = {
    "nn.functional.dropout2d",
    "nn.functional.dropout3d",
    "nn.functional.alpha_dropout",
    "nn.functional.feature_alpha_dropout",
}


def _samples():
    cases = []
    for op in op_db:
        if op.name not in OPS:
            continue
        for dtype in DTYPES:
            if dtype not in op.supported_dtypes("cpu"):
                continue
            for i, s in enumerate(op.sample_inputs("cpu", dtype, requires_grad=False)):
                name = f"{op.name}[{op.variant_test_name}]-{str(dtype)[6:]}-{i}"
                cases.append(pytest.param(op.name, s.input, dict(s.kwargs), id=name))
    return cases


SAMPLES = _samples()


def test_opinfo_samples_found():
    # the installed torch ships samples for all five functions, in all four dtypes
    assert {c.values[0] for c in SAMPLES} == set(OPS)
    assert len(SAMPLES) >= 200


def _run_both(name, x, kwargs):
    torch_fn, ours_fn, torch_training = OPS[name]
    kwargs = {"training": torch_training, **kwargs}  # droplab's default is training=True
    torch.manual_seed(0)
    theirs = torch_fn(x.clone(), **kwargs)
    torch.manual_seed(0)
    ours = ours_fn(x.clone(), kwargs.get("p", 0.5), kwargs["training"])
    return theirs, ours, kwargs.get("p", 0.5), kwargs["training"]


@pytest.mark.filterwarnings("ignore:dropout2d")
@pytest.mark.parametrize("name, x, kwargs", SAMPLES)
def test_opinfo_sample_side_by_side(name, x, kwargs):
    training = kwargs.get("training", OPS[name][2])
    p = kwargs.get("p", 0.5)
    if name == "nn.functional.dropout2d" and x.dim() == 3 and training and p > 0:
        # documented difference (pytorch issue 69801): torch reads (C, H, W) as (N, C, L)
        with pytest.raises(ValueError, match="69801"):
            _run_both(name, x, kwargs)
        return
    theirs, ours, p, training = _run_both(name, x, kwargs)
    assert (ours.shape, ours.dtype, ours.stride()) == (theirs.shape, theirs.dtype, theirs.stride())
    if not training or p == 0:
        assert torch.equal(ours, x) and torch.equal(theirs, x)
    elif p == 1:
        assert torch.equal(ours, torch.zeros_like(x)) and torch.equal(theirs, ours)
    elif name in SAME_STREAM:
        assert torch.equal(ours, theirs)
    else:  # element-wise: droplab's own stream, the values torch's would take
        kept = x * (1 / (1 - p))
        assert bool(((ours == 0) | (ours == kept)).all())


# ----------------------------------------------------------------------------------------------
# float16 / bfloat16 channel dropout: torch's bits (issue 18: the mask is scaled in x's dtype)
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("inplace", [False, True])
@pytest.mark.parametrize(
    "pair, shape",
    [
        ((nn.Dropout1d, droplab.Dropout1d), (4, 16, 8)),
        ((nn.Dropout1d, droplab.Dropout1d), (16, 8)),
        ((nn.Dropout2d, droplab.Dropout2d), (4, 16, 3, 3)),
        ((nn.Dropout3d, droplab.Dropout3d), (4, 16, 2, 2, 2)),
        ((nn.Dropout3d, droplab.Dropout3d), (16, 2, 2, 2)),
        ((nn.AlphaDropout, droplab.AlphaDropout), (8, 32)),
        ((nn.FeatureAlphaDropout, droplab.FeatureAlphaDropout), (4, 16, 3)),
    ],
)
def test_modules_bit_identical_to_torch_every_dtype(pair, shape, dtype, inplace):
    x = torch.randn(shape).to(dtype)
    outs = []
    for cls in pair:
        torch.manual_seed(3)
        outs.append(cls(0.3, inplace)(x.clone()))  # 1 / 0.7 is inexact in every dtype
    assert torch.equal(outs[0], outs[1])


# ----------------------------------------------------------------------------------------------
# test/nn/test_dropout.py, case by case
# ----------------------------------------------------------------------------------------------

MODULE_PAIRS = [
    (nn.Dropout, droplab.Dropout, (1000,)),
    (nn.Dropout1d, droplab.Dropout1d, (50, 20, 10)),
    (nn.Dropout2d, droplab.Dropout2d, (50, 20, 3, 3)),
    (nn.Dropout3d, droplab.Dropout3d, (50, 20, 2, 2, 2)),
]


def _binomial_bound(p: float, units: int, k: float = 6.0) -> float:
    # the mean of the kept fraction (each value 0 or (1 - p) / (1 - p) = 1) over `units` draws
    return k * math.sqrt(p * (1 - p) / units)


@pytest.mark.parametrize("torch_cls, ours_cls, shape", MODULE_PAIRS)
@pytest.mark.parametrize("inplace", [False, True])
def test_dropout_mean_gradient_and_eval(torch_cls, ours_cls, shape, inplace):
    # test_dropout.py's _test_dropout: input filled with 1 - p keeps mean 1 - p, so does the
    # gradient; eval returns the input; repr works
    p = 0.2
    x = torch.full(shape, 1 - p)
    units = math.prod(shape[:2]) if ours_cls is not droplab.Dropout else math.prod(shape)
    for cls in (torch_cls, ours_cls):
        leaf = x.clone().requires_grad_()
        out = cls(p, inplace)(leaf + 0 if inplace else leaf)
        assert abs(out.mean().item() - (1 - p)) < _binomial_bound(p, units)
        out.backward(x)
        assert abs(leaf.grad.mean().item() - (1 - p)) < _binomial_bound(p, units)
        for flag in (True, False):
            assert torch.equal(cls(p, flag).eval()(x), x)
        assert repr(cls(p)).startswith(cls.__name__)


@pytest.mark.parametrize(
    "pair, shape, memory_format",
    [
        ((nn.Dropout, droplab.Dropout), (2, 3, 3, 3), torch.contiguous_format),
        ((nn.Dropout, droplab.Dropout), (2, 3, 3, 3), torch.channels_last),
        ((nn.Dropout2d, droplab.Dropout2d), (2, 3, 3, 3), torch.channels_last),
        ((nn.Dropout3d, droplab.Dropout3d), (2, 3, 3, 3, 3), torch.channels_last_3d),
    ],
)
def test_dropout_discontiguous(pair, shape, memory_format):
    # _test_dropout_discontiguous: from a strided input, p = 0 and p = 1e-10 return the values,
    # and p > 0 gives an output dense in memory_format, with torch's strides
    for p in (0, 1e-10):
        base = torch.empty(*shape[:-1], 2 * shape[-1], memory_format=memory_format)
        x = base[..., ::2]
        x.copy_(torch.ones(shape))
        out, theirs = pair[1](p=p)(x), pair[0](p=p)(x)
        if p != 0:
            assert out.is_contiguous(memory_format=memory_format)
        assert out.stride() == theirs.stride()
        assert torch.equal(out, x)


@pytest.mark.parametrize("backend", ["torch", "fast"])
def test_dropout_stride_and_mean_preserved_for_every_permutation(backend):
    # _test_dropout_stride_mean_preserve: each of the 24 permutations keeps its strides, as
    # torch's output does, and the mean stays within the binomial bound
    p, x = 0.1, torch.ones(8, 16, 16, 16)
    for perm in itertools.permutations(range(4)):
        inp = x.permute(perm)
        out = droplab.Dropout(p, backend=backend)(inp)
        assert out.stride() == inp.stride() == nn.Dropout(p)(inp).stride()
        assert abs(out.mean().item() - 1.0) < 6 * math.sqrt(p / (1 - p) / inp.numel())


@pytest.mark.parametrize(
    "torch_cls, ours_cls, shape",
    [
        (nn.Dropout1d, droplab.Dropout1d, (8, 20)),
        (nn.Dropout3d, droplab.Dropout3d, (8, 3, 3, 3)),
    ],
)
def test_dropout_nd_no_batch(torch_cls, ours_cls, shape):
    # _test_dropoutNd_no_batch: an unbatched input gives the batched result of one sample,
    # from the same random numbers; and droplab gives torch's bits
    x = torch.rand(shape)
    results = []
    for cls in (torch_cls, ours_cls):
        m = cls(0.5)
        torch.manual_seed(1)
        no_batch = m(x.clone())
        torch.manual_seed(1)
        batched = m(x.clone().unsqueeze(0)).squeeze(0)
        assert torch.equal(no_batch, batched)
        results.append(no_batch)
    assert torch.equal(results[0], results[1])


@pytest.mark.parametrize("cls", [droplab.Dropout1d, droplab.Dropout2d, droplab.Dropout3d])
def test_dropout_nd_channel_zero(cls):
    # _test_dropoutNd_channel_zero: a positive input has each channel all zero or all kept
    shape = {droplab.Dropout1d: (8, 12, 5), droplab.Dropout2d: (8, 12, 4, 4)}.get(
        cls, (8, 12, 2, 2, 2)
    )
    result = cls(0.5)(torch.rand(shape) + 0.1)
    nonzero = (result != 0).flatten(2).sum(-1)
    channel = math.prod(shape[2:])
    assert bool(((nonzero == 0) | (nonzero == channel)).all())


@pytest.mark.parametrize(
    "make",
    [
        lambda p: nn.Dropout(p),
        lambda p: droplab.Dropout(p),
        lambda p: droplab.Dropout1d(p),
        lambda p: droplab.Dropout2d(p),
        lambda p: droplab.Dropout3d(p),
        lambda p: droplab.AlphaDropout(p),
        lambda p: droplab.FeatureAlphaDropout(p),
        lambda p: F.dropout(torch.ones(1), p),
        lambda p: F.alpha_dropout(torch.ones(1), p),
    ],
)
@pytest.mark.parametrize("p", [-0.1, 1.1])
def test_invalid_dropout_p(make, p):
    # test_invalid_dropout_p: a ValueError, as torch's
    with pytest.raises(ValueError):
        make(p)


# ----------------------------------------------------------------------------------------------
# documented differences (docs/variants.md), pinned
# ----------------------------------------------------------------------------------------------


def test_difference_integer_input_is_a_type_error():
    # torch's feature_alpha_dropout returns an integer input untouched in eval; droplab refuses
    # non-floating inputs everywhere (API.md: integer or bool input is a TypeError)
    x = torch.arange(4)
    assert TF.feature_alpha_dropout(x, 0.5, False) is x
    with pytest.raises(TypeError, match="floating-point"):
        F.feature_alpha_dropout(x, 0.5, False)


def test_difference_training_default_of_alpha_dropout():
    x = torch.randn(100)
    assert torch.equal(TF.alpha_dropout(x, 0.5), x)  # torch: training=False by default
    assert not torch.equal(F.alpha_dropout(x, 0.5), x)  # droplab: training=True


@pytest.mark.filterwarnings("ignore:dropout2d")
def test_difference_dropout2d_other_ranks_in_training():
    x = torch.ones(2, 3)
    assert TF.dropout2d(x, 0.5, training=False) is x
    assert F.dropout2d(x, 0.5, training=False) is x  # eval: the input, as torch
    TF.dropout2d(x, 0.5)  # torch warns and goes on
    with pytest.raises(ValueError, match="expected an input of shape"):
        F.dropout2d(x, 0.5)


def test_feature_alpha_dropout_eval_returns_input_at_every_rank():
    # issue 18, item 7: torch returns x for 0-D and 1-D input in eval; so does droplab
    for x in (torch.tensor(1.5), torch.randn(5), torch.randn(2, 3)):
        assert TF.feature_alpha_dropout(x, 0.5, False) is x
        assert F.feature_alpha_dropout(x, 0.5, training=False) is x
        assert F.feature_alpha_dropout(x, 0.0) is x
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        F.feature_alpha_dropout(torch.randn(5), 0.5)


# ----------------------------------------------------------------------------------------------
# timm's drop_path (its code, copied: timm imports torchvision, which does not import here)
# ----------------------------------------------------------------------------------------------


def _timm_drop_path(x, drop_prob: float = 0.0, training: bool = False, scale_by_keep: bool = True):
    # timm/layers/drop.py, drop_path, verbatim but for the docstring
    if drop_prob == 0.0 or not training:
        return x
    keep_prob = 1 - drop_prob
    shape = (x.shape[0],) + (1,) * (x.ndim - 1)
    random_tensor = x.new_empty(shape).bernoulli_(keep_prob)
    if keep_prob > 0.0 and scale_by_keep:
        random_tensor.div_(keep_prob)
    return x * random_tensor


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("scale_by_keep", [True, False])
def test_drop_path_bit_identical_to_timm_every_dtype(dtype, scale_by_keep):
    x = torch.randn(64, 3, 5).to(dtype)
    torch.manual_seed(4)
    theirs = _timm_drop_path(x, 0.3, True, scale_by_keep)
    torch.manual_seed(4)
    ours = F.drop_path(x, 0.3, scale_by_keep=scale_by_keep)
    assert torch.equal(ours, theirs)
