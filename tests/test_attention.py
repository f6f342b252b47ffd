"""droplab.attention: the SDPA function with droplab's mask, and routing one model's attention."""

from __future__ import annotations

import copy
import doctest
import math
import pickle
import re
import warnings

import pytest
import torch
import torch.nn.functional as TF
from torch import nn

import droplab
from droplab import attention as A
from droplab.attention import scaled_dot_product_attention as sdpa
from droplab.kernels.rng import derive_seed


def qkv(*shape, s=None, e=8, ev=None, dtype=torch.float64, seed=0):
    """(q, k, v) of shapes (*shape, L, e), (*shape, S, e), (*shape, S, ev)."""
    g = torch.Generator().manual_seed(seed)
    L = shape[-1]
    lead = shape[:-1]
    s = L if s is None else s
    q = torch.randn(*lead, L, e, generator=g, dtype=dtype)
    k = torch.randn(*lead, s, e, generator=g, dtype=dtype)
    v = torch.randn(*lead, s, ev or e, generator=g, dtype=dtype)
    return q, k, v


def reference(q, k, v, attn_mask=None, p=0.0, is_causal=False, scale=None, seed=None):
    """PyTorch's documented SDPA math, in float64, with droplab's mask of ``seed``."""
    L, S = q.size(-2), k.size(-2)
    scale = 1 / math.sqrt(q.size(-1)) if scale is None else scale
    bias = torch.zeros(L, S, dtype=q.dtype)
    if is_causal:
        bias.masked_fill_(~torch.ones(L, S, dtype=torch.bool).tril(), float("-inf"))
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            bias = bias.masked_fill(~attn_mask, float("-inf"))
        else:
            bias = bias + attn_mask
    w = q @ k.transpose(-2, -1) * scale + bias
    w = torch.softmax(w, -1).nan_to_num(0.0)
    if p > 0:
        w = w * droplab.dropout_mask(w.shape, p, seed=seed) / (1 - p)
    return w @ v


MASKS = {
    "none": lambda L, S: None,
    "bool": lambda L, S: torch.rand(L, S, generator=torch.Generator().manual_seed(1)) > 0.3,
    "float": lambda L, S: torch.randn(L, S, generator=torch.Generator().manual_seed(2)).double(),
}

# ----------------------------------------------------------------------------------------------
# the function
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mask", MASKS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_p0_is_torchs_call_bit_for_bit(mask, dtype):
    q, k, v = qkv(2, 3, 6, s=7, dtype=dtype)
    m = MASKS[mask](6, 7)
    m = m.to(dtype) if m is not None and m.is_floating_point() else m
    assert torch.equal(sdpa(q, k, v, m), TF.scaled_dot_product_attention(q, k, v, m))
    q, k, v = qkv(2, 3, 6, dtype=dtype)
    assert torch.equal(
        sdpa(q, k, v, is_causal=True), TF.scaled_dot_product_attention(q, k, v, is_causal=True)
    )


@pytest.mark.parametrize("mask", MASKS)
@pytest.mark.parametrize("p", [0.1, 0.5])
def test_dropout_matches_the_float64_twin_with_droplabs_mask(mask, p):
    q, k, v = qkv(2, 3, 6, s=7, ev=5)
    m = MASKS[mask](6, 7)
    got = sdpa(q, k, v, m, dropout_p=p, seed=11)
    torch.testing.assert_close(got, reference(q, k, v, m, p, seed=11), rtol=1e-12, atol=1e-12)


def test_causal_scale_and_gqa_match_the_twin():
    q, k, v = qkv(2, 4, 6)
    got = sdpa(q, k, v, dropout_p=0.3, is_causal=True, scale=0.7, seed=5)
    want = reference(q, k, v, p=0.3, is_causal=True, scale=0.7, seed=5)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    # grouped-query attention: 4 query heads share 2 key/value heads
    k2, v2 = k[:, :2], v[:, :2]
    got = sdpa(q, k2, v2, dropout_p=0.3, enable_gqa=True, seed=5)
    want = reference(q, k2.repeat_interleave(2, 1), v2.repeat_interleave(2, 1), p=0.3, seed=5)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    assert torch.equal(
        sdpa(q, k2, v2, enable_gqa=True),
        TF.scaled_dot_product_attention(q, k2, v2, enable_gqa=True),
    )


@pytest.mark.parametrize("kind", ["bool", "float"])
def test_a_mask_that_broadcasts_the_batch_matches_the_twin(kind):
    q, k, v = qkv(1, 2, 4)  # one query batch, masks for three
    g = torch.Generator().manual_seed(4)
    m = torch.rand(3, 1, 4, 4, generator=g) > 0.3
    m = m if kind == "bool" else torch.randn(3, 1, 4, 4, generator=g).double()
    got = sdpa(q, k, v, m, dropout_p=0.2, seed=8)
    assert got.shape == (3, 2, 4, 8)
    torch.testing.assert_close(got, reference(q, k, v, m, 0.2, seed=8), rtol=1e-12, atol=1e-12)


def test_kept_probabilities_are_scaled_exactly_and_the_drop_rate_is_binomial():
    # v = identity: the output is the dropped probability matrix itself
    n, L, p = 16, 64, 0.3
    q, k, _ = qkv(n, L, e=L)
    v = torch.eye(L, dtype=torch.float64).expand(n, L, L)
    got = sdpa(q, k, v, dropout_p=p, seed=3)
    probs = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(L), -1)
    kept = got != 0
    torch.testing.assert_close(got[kept], probs[kept] / (1 - p), rtol=1e-14, atol=0)
    total = kept.numel()
    rate = 1 - kept.sum().item() / total
    assert abs(rate - p) <= 5 * math.sqrt(p * (1 - p) / total)
    assert torch.equal(kept, droplab.dropout_mask(got.shape, p, seed=3))


def test_seeds_fix_the_mask_and_no_seed_follows_torchs_rng():
    q, k, v = qkv(2, 2, 16, dtype=torch.float32)
    assert torch.equal(sdpa(q, k, v, dropout_p=0.5, seed=1), sdpa(q, k, v, dropout_p=0.5, seed=1))
    assert not torch.equal(
        sdpa(q, k, v, dropout_p=0.5, seed=1), sdpa(q, k, v, dropout_p=0.5, seed=2)
    )
    torch.manual_seed(7)
    a = sdpa(q, k, v, dropout_p=0.5)
    b = sdpa(q, k, v, dropout_p=0.5)
    torch.manual_seed(7)
    assert torch.equal(a, sdpa(q, k, v, dropout_p=0.5)) and not torch.equal(a, b)


def test_rows_that_attend_to_nothing_give_zeros_like_torch():
    q, k, v = qkv(1, 1, 4)
    m = torch.ones(4, 4, dtype=torch.bool)
    m[1] = False
    for p in (0.0, 0.5):
        got = sdpa(q, k, v, m, dropout_p=p, seed=0)
        assert not got.isnan().any() and torch.equal(got[0, 0, 1], torch.zeros(8, dtype=q.dtype))
    assert torch.equal(
        TF.scaled_dot_product_attention(q, k, v, m)[0, 0, 1], torch.zeros(8).double()
    )


def test_p1_drops_everything():
    q, k, v = qkv(2, 2, 8)
    assert torch.equal(sdpa(q, k, v, dropout_p=1.0, seed=0), torch.zeros_like(q))


def test_gradcheck_with_a_fixed_mask():
    q, k, v = (t.requires_grad_() for t in qkv(1, 2, 5, e=3))
    m = torch.rand(5, 5, generator=torch.Generator().manual_seed(0)) > 0.2
    assert torch.autograd.gradcheck(
        lambda a, b, c: sdpa(a, b, c, m, dropout_p=0.4, seed=9), (q, k, v)
    )


def test_causal_with_a_mask_is_torchs_error():
    q, k, v = qkv(1, 1, 4)
    msg = "Explicit attn_mask should not be set when is_causal=True"
    with pytest.raises(RuntimeError, match=re.escape(msg)):
        sdpa(q, k, v, torch.ones(4, 4, dtype=torch.bool), dropout_p=0.1, is_causal=True)


def test_docstring_examples_run():
    result = doctest.testmod(A, optionflags=doctest.ELLIPSIS, extraglobs={"torch": torch})
    assert result.attempted >= 8 and result.failed == 0


# ----------------------------------------------------------------------------------------------
# routing: nn.MultiheadAttention and TransformerEncoderLayer
# ----------------------------------------------------------------------------------------------


def mha(p=0.3, seed=0):
    torch.manual_seed(seed)
    return nn.MultiheadAttention(16, 4, dropout=p, batch_first=True)


def test_routed_mha_is_seeded_step_by_step_and_ignores_torchs_rng():
    m = mha()
    (router,) = A.route_attention(m, seed=5)
    assert router.seed == derive_seed(5, 0) and router.path == ""
    x = torch.randn(2, 6, 16)
    torch.manual_seed(1)
    a = m(x, x, x)[0]
    torch.manual_seed(1)
    b = m(x, x, x)[0]  # step 1: another mask
    router.step = 0
    torch.manual_seed(2)
    c = m(x, x, x)[0]  # step 0 again, another torch seed: the same output
    assert not torch.equal(a, b) and torch.equal(a, c)
    assert router.step == 1


def test_both_of_torchs_mha_paths_get_the_same_mask():
    # need_weights=True computes the weights and calls F.dropout; False calls SDPA: the
    # probabilities (B * heads, L, S) and (B, heads, L, S) are the same elements in order
    m = mha()
    (router,) = A.route_attention(m, seed=5)
    x = torch.randn(2, 6, 16)
    a, w = m(x, x, x, need_weights=True, average_attn_weights=False)
    router.step = 0
    b, none = m(x, x, x, need_weights=False)
    torch.testing.assert_close(a, b)
    assert none is None and w.shape == (2, 4, 6, 6)


def test_eval_outputs_and_state_dict_unchanged_bit_for_bit():
    m = mha()
    ref = copy.deepcopy(m)
    A.route_attention(m, seed=0)
    x = torch.randn(2, 6, 16)
    m.eval()
    ref.eval()
    for need in (True, False):
        assert torch.equal(m(x, x, x, need_weights=need)[0], ref(x, x, x, need_weights=need)[0])
    with torch.no_grad():  # torch's fused inference path
        assert torch.equal(m(x, x, x)[0], ref(x, x, x)[0])
    sd, rd = m.state_dict(), ref.state_dict()
    assert sd.keys() == rd.keys() and all(torch.equal(sd[k], rd[k]) for k in sd)


def test_routing_is_per_instance_and_undone_cleanly():
    routed, other = mha(), mha()
    sdpa_before, dropout_before = TF.scaled_dot_product_attention, TF.dropout
    A.route_attention(routed, seed=0)
    assert "forward" in routed.__dict__ and "forward" not in other.__dict__
    assert nn.MultiheadAttention.forward is type(other).forward
    x = torch.randn(2, 6, 16)
    # the other instance still draws from torch's RNG
    torch.manual_seed(3)
    a = other(x, x, x)[0]
    torch.manual_seed(3)
    assert torch.equal(a, other(x, x, x)[0])
    assert A.routed_modules(routed) == [("", routed)]
    assert A.unroute_attention(routed) == [""]
    assert "forward" not in routed.__dict__ and A.routed_modules(routed) == []
    assert TF.scaled_dot_product_attention is sdpa_before and TF.dropout is dropout_before
    torch.manual_seed(3)
    assert torch.equal(routed(x, x, x)[0], a)  # torch's dropout again, same weights, same RNG


def test_no_mode_left_behind_after_an_exception():
    m = mha()
    A.route_attention(m, seed=0)
    with pytest.raises(AssertionError):
        m(torch.randn(2, 6, 15), torch.randn(2, 6, 15), torch.randn(2, 6, 15))
    assert not torch._C._is_torch_function_mode_enabled()


def test_deepcopy_and_pickle_keep_the_routing_apart():
    m = mha()
    A.route_attention(m, seed=0)
    x = torch.randn(2, 6, 16)
    m(x, x, x)  # the router has built its copy of torch's MHA function: not shared
    for twin in (copy.deepcopy(m), pickle.loads(pickle.dumps(m))):
        assert twin.forward.module is twin and twin.forward.router is not m.forward.router
        twin.forward.router.step = m.forward.router.step = 0
        assert torch.equal(twin(x, x, x)[0], m(x, x, x)[0])
        assert m.forward.router.step == twin.forward.router.step == 1


def test_transformer_encoder_layer_has_all_its_dropout_from_droplab():
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.2, batch_first=True)
    ref = copy.deepcopy(layer)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        droplab.replace_dropout(layer, seed=1)
    assert [n for n, _ in A.routed_modules(layer)] == ["self_attn"]
    x = torch.randn(3, 5, 16)
    layer.eval()
    ref.eval()
    assert torch.equal(layer(x), ref(x))
    layer.train()
    outs = []
    for s in (1, 2):  # another torch seed, the same droplab steps: the same output
        torch.manual_seed(s)
        for m in layer.modules():
            if hasattr(m, "step"):
                m.step = 0
        layer.self_attn.forward.router.step = 0
        outs.append(layer(x))
    assert torch.equal(*outs)
    assert layer.self_attn.forward.router.step == 1


# ----------------------------------------------------------------------------------------------
# what routing cannot reach
# ----------------------------------------------------------------------------------------------


class NoisyAttention(nn.Module):
    """Attention through SDPA, then a hand-made dropout with torch.rand_like."""

    def forward(self, q):
        y = TF.scaled_dot_product_attention(q, q, q, dropout_p=0.1 if self.training else 0.0)
        if self.training:
            y = y * (torch.rand_like(y) > 0.1) / 0.9
        return y


class FunctionalDropout(nn.Module):
    """A bare F.dropout in someone's forward (routed: droplab takes it)."""

    def forward(self, x):
        return TF.dropout(x, 0.5, self.training)


def test_a_bare_functional_dropout_is_routed():
    model = nn.Sequential(nn.Linear(8, 8), FunctionalDropout())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        droplab.replace_dropout(model, seed=4)
    x = torch.randn(64, 8)
    torch.manual_seed(0)
    a = model(x)
    model[1].forward.router.step = 0
    torch.manual_seed(1)
    assert torch.equal(a, model(x)) and (a == 0).any()


def test_unreachable_random_draws_are_named_by_module_path():
    model = nn.Sequential(nn.Linear(8, 8), nn.Sequential(NoisyAttention()))
    with pytest.warns(UserWarning) as caught:
        droplab.replace_dropout(model, seed=0)
    msgs = [str(w.message) for w in caught]
    assert msgs == ["replace_dropout cannot reach: 1.0 (NoisyAttention) calls torch.rand_like"]
    # routed, so the draw is also named when it happens in training
    with pytest.warns(UserWarning, match=re.escape("1.0 calls torch.rand_like in its forward")):
        model(torch.randn(2, 1, 4, 8))


def test_unknown_dropout_like_classes_are_named():
    class MyDropBlock(nn.Module):
        def forward(self, x):
            return x

    model = nn.Sequential(nn.Linear(4, 4), MyDropBlock())
    with pytest.warns(
        UserWarning, match=re.escape("1 (MyDropBlock) is not a dropout droplab knows")
    ):
        droplab.replace_dropout(model)


def test_route_attention_invalid_arguments():
    with pytest.raises(ValueError, match="backend"):
        A.route_attention(mha(), backend="gpu")
    with pytest.raises((ValueError, TypeError), match="seed"):
        A.route_attention(mha(), seed=-1)


def test_the_router_is_active_in_its_own_thread_only():
    import threading

    started, release = threading.Event(), threading.Event()

    class Waiting(nn.Module):
        def forward(self, q):
            started.set()
            release.wait(10)
            return TF.scaled_dot_product_attention(q, q, q, dropout_p=0.5)

    m = Waiting()
    (router,) = A.route_attention(m, seed=0)
    worker = threading.Thread(target=lambda: m(torch.randn(1, 1, 4, 8)))
    worker.start()
    started.wait(10)
    # the other thread is inside the routed forward; this thread's calls are torch's own
    assert not torch._C._is_torch_function_mode_enabled()
    release.set()
    worker.join()
    assert router.step == 1


def test_two_threads_running_routed_mha_keep_their_own_masks():
    import threading

    models = [mha(seed=0), mha(seed=0)]
    for i, m in enumerate(models):
        A.route_attention(m, seed=10 + i)
    x = torch.randn(2, 6, 16)
    n = 40

    def run(m, out):
        for _ in range(n):
            out.append(m(x, x, x, need_weights=False)[0])

    alone = []
    for m in models:
        got = []
        run(m, got)
        alone.append(got)
        m.forward.router.step = 0
    together = [[], []]
    threads = [threading.Thread(target=run, args=(m, out)) for m, out in zip(models, together)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for a, b in zip(alone, together):
        assert all(torch.equal(u, v) for u, v in zip(a, b)) and len(b) == n


# ----------------------------------------------------------------------------------------------
# torch.compile of a routed model
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["timm", "mha"])
def test_compiled_routed_model_has_no_graph_break_no_recompile_and_eager_bits(kind):
    import _timm_like

    torch.manual_seed(0)
    if kind == "timm":
        model = _timm_like.Block(16, 2, proj_drop=0.1, attn_drop=0.2, drop_path=0.1)
    else:
        model = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.2, batch_first=True)
    droplab.replace_dropout(model, seed=1)
    twin = copy.deepcopy(model)
    x = torch.randn(4, 6, 16)
    explained = torch._dynamo.explain(copy.deepcopy(model))(x)
    assert explained.graph_break_count == 0, explained.break_reasons
    graphs = []

    def backend(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    torch._dynamo.reset()
    compiled = torch.compile(model, backend=backend)
    for _ in range(3):
        assert torch.equal(compiled(x), twin(x))
    assert len(graphs) == 1
    assert [r.step for _, m in A.routed_modules(model) for r in [m.forward.router]] == [3]
