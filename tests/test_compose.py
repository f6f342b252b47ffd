"""Composability (API.md, "Composability"): every droplab function and module, seeded or not,
on every backend, under torch.compile (fullgraph, no per-step recompiles, eager's bits),
torch.export (train and eval), torch.func (grad, vjp, jvp, functional_call, vmap), forward-mode
AD (a tangent is never dropped), any memory format, deepcopy and pickle."""

from __future__ import annotations

import copy
import pickle

import pytest
import torch
import torch.nn.functional as TF
from torch._dynamo.testing import CompileCounter
from torch.autograd import forward_ad as fwAD

import droplab
from droplab import functional as F
from droplab.kernels.fast import AUTO_MIN_NUMEL
from droplab.kernels.rng import derive_seed, dropout_mask

# name -> (module factory taking a seed or None, input shape). "dropout-auto" is large enough
# for backend="auto" to take the fast kernel in eager; "dropout-fast" is small and forced.
MODULES = {
    "dropout-auto": (lambda s: droplab.Dropout(0.5, seed=s), (32, 64)),
    "dropout-torch": (lambda s: droplab.Dropout(0.5, seed=s, backend="torch"), (32, 64)),
    "dropout-fast": (lambda s: droplab.Dropout(0.5, seed=s, backend="fast"), (4, 8)),
    "dropout-classic": (lambda s: droplab.Dropout(0.5, mode="classic", seed=s), (32, 64)),
    "dropout1d": (lambda s: droplab.Dropout1d(0.5, seed=s), (2, 3, 8)),
    "dropout2d": (lambda s: droplab.Dropout2d(0.5, seed=s), (2, 3, 4, 4)),
    "dropout3d": (lambda s: droplab.Dropout3d(0.5, seed=s), (2, 3, 2, 2, 2)),
    "alpha": (lambda s: droplab.AlphaDropout(0.3, seed=s), (8, 16)),
    "feature_alpha": (lambda s: droplab.FeatureAlphaDropout(0.3, seed=s), (2, 3, 4)),
    "gaussian": (lambda s: droplab.GaussianDropout(0.3), (8, 16)),
    "drop_connect": (lambda s: droplab.DropConnect(16, 4, p=0.5, seed=s), (3, 16)),
    "drop_path": (lambda s: droplab.DropPath(0.5, seed=s), (6, 3, 5)),
    "drop_block": (lambda s: droplab.DropBlock2d(0.3, block_size=3, seed=s), (2, 3, 8, 8)),
    "locked": (lambda s: droplab.LockedDropout(0.5, seed=s), (5, 2, 3)),
}
SEEDED = [n for n in MODULES if n != "gaussian"]  # Gaussian noise has no counter-based stream


def _module(name, seed):
    factory, shape = MODULES[name]
    torch.manual_seed(0)  # DropConnect's weights
    return factory(seed).train(), torch.randn(shape)


# every function, seeded, as f(x, seed): all are affine in x given the mask
FUNCTIONS = {
    "dropout-auto": (lambda x, s: F.dropout(x, 0.5, seed=s), (32, 64)),
    "dropout-torch": (lambda x, s: F.dropout(x, 0.5, seed=s, backend="torch"), (32, 64)),
    "dropout-fast": (lambda x, s: F.dropout(x, 0.5, seed=s, backend="fast"), (4, 8)),
    "dropout1d": (lambda x, s: F.dropout1d(x, 0.5, seed=s), (2, 3, 8)),
    "dropout2d": (lambda x, s: F.dropout2d(x, 0.5, seed=s), (2, 3, 4, 4)),
    "dropout3d": (lambda x, s: F.dropout3d(x, 0.5, seed=s), (2, 3, 2, 2, 2)),
    "alpha": (lambda x, s: F.alpha_dropout(x, 0.3, seed=s), (8, 16)),
    "feature_alpha": (lambda x, s: F.feature_alpha_dropout(x, 0.3, seed=s), (2, 3, 4)),
    "drop_connect": (
        lambda x, s: F.drop_connect(x, torch.ones(4, 16), torch.ones(4), 0.5, seed=s),
        (3, 16),
    ),
    "drop_path": (lambda x, s: F.drop_path(x, 0.5, seed=s), (6, 3, 5)),
    "drop_block": (lambda x, s: F.drop_block_2d(x, 0.3, block_size=3, seed=s), (2, 3, 8, 8)),
    "locked": (lambda x, s: F.locked_dropout(x, 0.5, seed=s), (5, 2, 3)),
    "shared": (lambda x, s: F.shared_dropout(x, 0.5, dims=-1, seed=s), (4, 5, 6)),
}


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    # compiled code caches are per code object (Dropout.forward, ...): every test starts empty,
    # so that its CompileCounter sees only its own compiles and no test inherits a recompile
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def test_dropout_auto_case_takes_the_fast_kernel_in_eager():
    # otherwise the tests below would not compare the kernel with the traced route
    assert 32 * 64 >= AUTO_MIN_NUMEL


# ----------------------------------------------------------------------------------------------
# torch.compile
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", SEEDED)
def test_compile_seeded_one_graph_no_recompile_eager_bits(name):
    m, x = _module(name, seed=11)
    twin = copy.deepcopy(m)
    counter = CompileCounter()
    compiled = torch.compile(m, backend=counter, fullgraph=True)
    for _ in range(4):
        assert torch.equal(compiled(x), twin(x))
    assert counter.frame_count == 1  # one trace for all steps: the step is a graph input
    assert m.step == twin.step == 4


@pytest.mark.parametrize("backend", ["auto", "torch", "fast"])
def test_compile_inplace_module_with_gradients(backend):
    m = droplab.Dropout(0.5, True, seed=3, backend=backend)
    twin = copy.deepcopy(m)
    counter = CompileCounter()
    compiled = torch.compile(m, backend=counter, fullgraph=True)
    x = torch.randn(32, 64, requires_grad=True)
    for _ in range(3):
        y, want = compiled(x * 1), twin(x * 1)
        assert torch.equal(y, want)
        (g,) = torch.autograd.grad(y.sum(), x)
        assert torch.equal(g, (want != 0).float() * 2.0)
    assert counter.frame_count == 1


def test_compiled_and_eager_calls_share_one_step_sequence():
    m = droplab.Dropout(0.5, seed=3)
    twin = copy.deepcopy(m)
    compiled = torch.compile(m, backend="eager", fullgraph=True)
    x = torch.randn(32, 64)
    for call in (compiled, m, compiled, m):
        assert torch.equal(call(x), twin(x))
    assert m.step == twin.step == 4


@pytest.mark.parametrize("name", list(MODULES))
def test_compile_unseeded_one_graph(name):
    m, x = _module(name, seed=None)
    counter = CompileCounter()
    compiled = torch.compile(m, backend=counter, fullgraph=True)
    outs = [compiled(x) for _ in range(3)]
    assert counter.frame_count == 1
    assert all(y.shape == outs[0].shape and y.dtype == x.dtype for y in outs)
    assert not torch.equal(outs[0], outs[1])  # fresh randomness at every step


@pytest.mark.parametrize("dynamic", [None, True])
@pytest.mark.parametrize("seed", [None, 4])
@pytest.mark.parametrize("name", ["dropout-auto", "dropout2d", "drop_block"])
def test_compile_new_batch_sizes_recompile_as_torch_dropout(name, seed, dynamic):
    # new batch sizes (the auto backend's size rule included): with automatic dynamic shapes
    # one recompile, then none; with dynamic=True none; as for torch.nn.Dropout
    m, x = _module(name, seed)
    counts = []
    for module in (m, torch.nn.Dropout(0.5)):
        torch._dynamo.reset()
        counter = CompileCounter()
        compiled = torch.compile(module, backend=counter, fullgraph=True, dynamic=dynamic)
        for n in (1, 3, 40, 70):
            assert compiled(torch.cat([x] * n)).shape[0] == n * x.shape[0]
        counts.append(counter.frame_count)
    assert counts[0] == counts[1] == (1 if dynamic else 2)


def test_compile_unseeded_functions_fullgraph():
    x = torch.ones(32, 64)
    counter = CompileCounter()
    for fn in (
        lambda t: F.dropout(t, 0.5),
        lambda t: F.dropout(t, 0.5, backend="fast"),
        lambda t: F.dropout(t, 0.5, backend="torch", inplace=True),
        lambda t: F.shared_dropout(t, 0.5, dims=0),
    ):
        y = torch.compile(fn, backend=counter, fullgraph=True)(x.clone())
        assert set(y.unique().tolist()) == {0.0, 2.0}
    assert counter.frame_count == 4


def test_compile_generator_argument_refused_as_torch_refuses_its_own():
    # documented limit (docs/variants.md): PyTorch cannot trace a torch.Generator argument
    g = torch.Generator().manual_seed(0)
    x = torch.ones(8)
    messages = []
    for fn in (
        lambda t: t * (torch.rand(t.shape, generator=g) > 0.5),
        lambda t: F.dropout(t, 0.5, generator=g),
    ):
        with pytest.raises(torch._dynamo.exc.Unsupported) as err:
            torch.compile(fn, backend="eager", fullgraph=True)(x)
        messages.append(str(err.value).splitlines()[0])
    assert messages[0] == messages[1]


def test_compile_inductor_seeded_module_same_bits_forward_and_backward():
    m = droplab.Dropout(0.5, seed=7)
    compiled = torch.compile(copy.deepcopy(m), fullgraph=True)
    for step in range(3):
        x = torch.randn(64, 48, requires_grad=True)
        y, y_eager = compiled(x), m(x)
        assert torch.equal(y, y_eager)
        (g,) = torch.autograd.grad(y.sum(), x)
        mask = dropout_mask(x.shape, 0.5, seed=derive_seed(7, step))
        assert torch.equal(g, mask.float() * 2.0)


# ----------------------------------------------------------------------------------------------
# torch.export
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(MODULES))
def test_export_train_and_eval(name):
    seed = None if name == "gaussian" else 5
    m, x = _module(name, seed)
    twin = copy.deepcopy(m)
    trained = torch.export.export(m, (x,)).module()
    y0, y1 = trained(x), trained(x)
    if seed is not None:  # steps 0 and 1 of the eager module, exactly
        assert torch.equal(y0, twin(x)) and torch.equal(y1, twin(x))
    assert not torch.equal(y0, y1)
    evaluated = torch.export.export(copy.deepcopy(twin).eval(), (x,)).module()
    assert torch.equal(evaluated(x), twin.eval()(x))


# ----------------------------------------------------------------------------------------------
# torch.func
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["auto", "torch", "fast"])
@pytest.mark.parametrize("seed", [None, 3])
def test_func_grad_over_functional_call_matches_autograd(backend, seed):
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Linear(16, 128), droplab.Dropout(0.5, seed=seed, backend=backend)
    )
    x = torch.randn(8, 16)
    params = dict(net.named_parameters())

    def loss(p):
        return torch.func.functional_call(net, p, (x,)).pow(2).sum()

    torch.manual_seed(1)
    grads = torch.func.grad(loss)(params)
    if seed is not None:
        net[1].step = 0
    torch.manual_seed(1)  # unseeded: the same draw from the global RNG, the same mask
    net.zero_grad()
    net(x).pow(2).sum().backward()
    for k, p in params.items():
        torch.testing.assert_close(grads[k], p.grad, rtol=0, atol=0)


@pytest.mark.parametrize("name", list(FUNCTIONS))
def test_func_vjp_and_jvp(name):
    fn, shape = FUNCTIONS[name]
    x, t = torch.randn(shape), torch.randn(shape)
    f = lambda u: fn(u, 9)  # noqa: E731
    v = torch.randn_like(f(x))
    out, vjp = torch.func.vjp(f, x)
    assert torch.equal(out, f(x))
    xg = x.clone().requires_grad_()
    (g_eager,) = torch.autograd.grad(f(xg), xg, v)
    torch.testing.assert_close(vjp(v)[0], g_eager)
    out, tangent = torch.func.jvp(f, (x,), (t,))
    assert torch.equal(out, f(x))
    torch.testing.assert_close(tangent, f(t) - f(torch.zeros(shape)))  # affine in x


# ----------------------------------------------------------------------------------------------
# vmap randomness: as torch's F.dropout
# ----------------------------------------------------------------------------------------------

VMAP_UNSEEDED = {
    "dropout-auto": lambda t: F.dropout(t, 0.5),
    "dropout-torch": lambda t: F.dropout(t, 0.5, backend="torch"),
    "dropout-fast": lambda t: F.dropout(t, 0.5, backend="fast"),
    "dropout2d": lambda t: F.dropout2d(t, 0.5),
    "alpha": lambda t: F.alpha_dropout(t, 0.5),
    "feature_alpha": lambda t: F.feature_alpha_dropout(t, 0.5),
    "gaussian": lambda t: F.gaussian_dropout(t, 0.5),
    "drop_path": lambda t: F.drop_path(t, 0.5),
    "drop_block": lambda t: F.drop_block_2d(t, 0.5, block_size=3),
}


@pytest.mark.parametrize("name", list(VMAP_UNSEEDED))
def test_vmap_randomness_like_torch(name):
    fn = VMAP_UNSEEDED[name]
    x = torch.ones(3, 8, 4, 8, 8)  # each element (8, 4, 8, 8): 2,048 values, the fast size
    different = torch.func.vmap(fn, randomness="different")(x)
    assert not torch.equal(different[0], different[1])
    same = torch.func.vmap(fn, randomness="same")(x)
    assert torch.equal(same[0], same[1]) and torch.equal(same[1], same[2])
    with pytest.raises(RuntimeError) as ours:
        torch.func.vmap(fn, randomness="error")(x)
    with pytest.raises(RuntimeError) as theirs:
        torch.func.vmap(lambda t: TF.dropout(t, 0.5), randomness="error")(x)
    assert str(ours.value) == str(theirs.value)


@pytest.mark.parametrize("backend", ["auto", "torch", "fast"])
def test_vmap_seeded_is_one_deterministic_mask(backend):
    x = torch.randn(3, 32, 64)
    y = torch.func.vmap(lambda t: F.dropout(t, 0.5, seed=4, backend=backend))(x)
    assert torch.equal(y, x * dropout_mask((32, 64), 0.5, seed=4) * 2.0)


# ----------------------------------------------------------------------------------------------
# forward-mode AD: never a dropped tangent
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(FUNCTIONS))
def test_forward_ad_seeded_every_function(name):
    fn, shape = FUNCTIONS[name]
    x, t = torch.randn(shape), torch.randn(shape)
    with fwAD.dual_level():
        y = fn(fwAD.make_dual(x, t), 21)
        primal, tangent = fwAD.unpack_dual(y)
    assert torch.equal(primal, fn(x, 21))
    assert tangent is not None
    torch.testing.assert_close(tangent, fn(t, 21) - fn(torch.zeros(shape), 21))


@pytest.mark.parametrize("backend", ["auto", "torch", "fast"])
@pytest.mark.parametrize("inplace", [False, True])
def test_forward_ad_tangent_of_unseeded_dropout_is_exact(backend, inplace):
    # issue 18: the fast path (>= 1,024 elements, no requires_grad) used to drop the tangent
    x, t = torch.ones(64, 64), torch.randn(64, 64)
    with fwAD.dual_level():
        dual = fwAD.make_dual(x.clone(), t.clone())  # in place changes the tangent too
        y = F.dropout(dual, 0.5, backend=backend, inplace=inplace)
        primal, tangent = fwAD.unpack_dual(y)
    assert set(primal.unique().tolist()) == {0.0, 2.0}
    assert torch.equal(tangent, t * primal)  # x = 1: y = m * 2, dy = m * 2 * dx


@pytest.mark.parametrize(
    "fn, shape",
    [
        (lambda t: F.dropout2d(t, 0.5), (4, 6, 8, 8)),
        (lambda t: F.drop_path(t, 0.5), (16, 6, 8)),
        (lambda t: F.gaussian_dropout(t, 0.5), (64, 64)),
        (lambda t: F.locked_dropout(t, 0.5), (5, 4, 64)),
        (lambda t: F.shared_dropout(t, 0.5, dims=0), (4, 64, 64)),
    ],
)
def test_forward_ad_tangent_of_unseeded_variants(fn, shape):
    x, t = torch.ones(shape), torch.randn(shape)
    with fwAD.dual_level():
        primal, tangent = fwAD.unpack_dual(fn(fwAD.make_dual(x, t)))
    assert torch.equal(tangent, t * primal)  # x = 1: y = noise, dy = noise * dx


def test_gradcheck_with_forward_ad_on_the_fast_backend():
    x = torch.randn(40, 30, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda t: F.dropout(t, 0.3, seed=2, backend="fast"), (x,), check_forward_ad=True
    )


# ----------------------------------------------------------------------------------------------
# memory format
# ----------------------------------------------------------------------------------------------

LAYOUT_FUNCTIONS = {
    "dropout-auto": lambda x: F.dropout(x, 0.5, seed=1),
    "dropout-torch": lambda x: F.dropout(x, 0.5, seed=1, backend="torch"),
    "dropout-fast": lambda x: F.dropout(x, 0.5, seed=1, backend="fast"),
    "dropout-inplace": lambda x: F.dropout(x.clone(), 0.5, seed=1, inplace=True),
    "dropout2d": lambda x: F.dropout2d(x, 0.5, seed=1),
    "alpha": lambda x: F.alpha_dropout(x, 0.5, seed=1),
    "feature_alpha": lambda x: F.feature_alpha_dropout(x, 0.5, seed=1),
    "drop_path": lambda x: F.drop_path(x, 0.5, seed=1),
    "drop_block": lambda x: F.drop_block_2d(x, 0.3, block_size=3, seed=1),
    "shared": lambda x: F.shared_dropout(x, 0.5, dims=1, seed=1),
}


@pytest.mark.parametrize("name", list(LAYOUT_FUNCTIONS))
@pytest.mark.parametrize("layout", ["channels_last", "permuted"])
def test_memory_format_kept_and_mask_logical(name, layout):
    fn = LAYOUT_FUNCTIONS[name]
    base = torch.randn(4, 8, 8, 16)
    if layout == "channels_last":
        x = base.to(memory_format=torch.channels_last)
    else:
        x = base.permute(0, 3, 1, 2)  # dense, not contiguous
    y = fn(x)
    assert y.stride() == x.stride() == TF.dropout(x, 0.5).stride()
    assert torch.equal(y, fn(x.contiguous()))  # the mask follows the logical index


# ----------------------------------------------------------------------------------------------
# deepcopy, pickle, state_dict, the step counter
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", SEEDED)
def test_deepcopy_pickle_resume_and_empty_state_dict(name):
    m, x = _module(name, seed=2)
    m(x)
    m(x)
    assert m.step == 2
    linear_keys = {"weight", "bias"} if name == "drop_connect" else set()
    assert set(m.state_dict()) == linear_keys  # like torch.nn.Dropout: no random state saved
    for twin in (copy.deepcopy(m), pickle.loads(pickle.dumps(m))):
        assert twin.step == 2
        assert torch.equal(twin(x), m(x))
        m.step = 2
    m.step = 0
    fresh, _ = _module(name, seed=2)
    assert torch.equal(m(x), fresh(x))


def test_step_setter_checks():
    m = droplab.Dropout(0.5, seed=1)
    for bad in (-1, 1.5, True, "3"):
        with pytest.raises(ValueError, match="step must be a non-negative int"):
            m.step = bad


# ----------------------------------------------------------------------------------------------
# ONNX (eval)
# ----------------------------------------------------------------------------------------------


def test_onnx_export_in_eval_matches_torch():
    onnxruntime = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    import io

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Linear(8, 16), droplab.Dropout(0.5, seed=1), droplab.DropPath(0.2)
    ).eval()
    x = torch.randn(4, 8)
    buf = io.BytesIO()
    torch.onnx.export(net, (x,), buf, dynamo=False, input_names=["x"])
    session = onnxruntime.InferenceSession(buf.getvalue(), providers=["CPUExecutionProvider"])
    (y,) = session.run(None, {"x": x.numpy()})
    torch.testing.assert_close(torch.from_numpy(y), net(x))


# ----------------------------------------------------------------------------------------------
# the route: the fused kernel in plain eager code, PyTorch ops under a transform
# ----------------------------------------------------------------------------------------------


def _saved_bytes(fn, x) -> int:
    total = 0

    def pack(t):
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn(x)
    return total


def test_eager_keeps_the_fused_kernel_and_transforms_get_ops():
    x = torch.randn(64, 64, requires_grad=True)
    # eager: the kernel regenerates the mask in backward, nothing saved
    assert _saved_bytes(lambda t: F.dropout(t, 0.5), x) == 0
    assert _saved_bytes(lambda t: F.dropout(t, 0.5, seed=1), x) == 0
    # under a forward-AD level the traced route runs (its bool mask is saved): same bits
    with fwAD.dual_level():
        assert _saved_bytes(lambda t: F.dropout(t, 0.5, seed=1), x) == x.numel()
        traced = F.dropout(x, 0.5, seed=1)
    assert torch.equal(traced, F.dropout(x, 0.5, seed=1))
