"""replace_dropout and mc_predict on real models: Hugging Face BERT, GPT-2 and ViT (built from
small configs, never downloaded) in "sdpa" and "eager" attention, and a timm-style ViT."""

from __future__ import annotations

import copy
import math
import os
import warnings

import pytest
import torch
from torch import nn

import _timm_like as timm_like
import droplab
from droplab import attention as A
from droplab.tools import restore_dropout

os.environ.setdefault("HF_HUB_OFFLINE", "1")
transformers = pytest.importorskip("transformers")

VOCAB, SEQ, BATCH = 64, 16, 4


def hf_model(kind: str, impl: str = "sdpa", p: float = 0.1) -> nn.Module:
    torch.manual_seed(0)
    if kind == "bert":
        config = transformers.BertConfig(
            vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
            intermediate_size=64, max_position_embeddings=SEQ, num_labels=3,
            hidden_dropout_prob=p, attention_probs_dropout_prob=p,
        )  # fmt: skip
        model = transformers.BertForSequenceClassification(config)
    elif kind == "gpt2":
        config = transformers.GPT2Config(
            vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=2, n_positions=SEQ,
            resid_pdrop=p, embd_pdrop=p, attn_pdrop=p, bos_token_id=0, eos_token_id=0,
        )  # fmt: skip
        model = transformers.GPT2LMHeadModel(config)
    else:
        config = transformers.ViTConfig(
            image_size=16, patch_size=4, hidden_size=32, num_hidden_layers=2,
            num_attention_heads=2, intermediate_size=64, num_labels=3,
            hidden_dropout_prob=p, attention_probs_dropout_prob=p,
        )  # fmt: skip
        model = transformers.ViTForImageClassification(config)
    model.config._attn_implementation = impl
    return model


def hf_input(kind: str) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    if kind == "vit":
        return torch.randn(BATCH, 3, 16, 16, generator=g)
    return torch.randint(0, VOCAB, (BATCH, SEQ), generator=g)


def loss_of(model, kind, x):
    logits = model(x).logits
    if kind == "gpt2":  # next-token loss
        return nn.functional.cross_entropy(logits[:, :-1].reshape(-1, VOCAB), x[:, 1:].reshape(-1))
    return nn.functional.cross_entropy(logits, torch.arange(BATCH) % 3)


def train_losses(model, kind, steps=3, torch_seed=0):
    """Losses of ``steps`` SGD steps; torch's global RNG reseeded with another value each step."""
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, losses = hf_input(kind), []
    model.train()
    for i in range(steps):
        torch.manual_seed(torch_seed + 100 * i)
        loss = loss_of(model, kind, x)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def dropout_count(model) -> int:
    """The dropouts of a (replaced) model that draw in a training forward: modules + routers."""
    return sum(m.step for m in model.modules() if isinstance(getattr(m, "step", None), int)) + sum(
        m.forward.router.step for _, m in A.routed_modules(model)
    )


KINDS = ["bert", "gpt2", "vit"]
IMPLS = ["sdpa", "eager"]

# dropouts that draw in one training forward of the 2-layer models above: BERT embeddings +
# 2 x (attention, attention output, FFN output) + classifier; GPT-2 embeddings + 2 x
# (attention, attention resid, MLP); ViT embeddings + 2 x (attention, attention output, FFN output)
DRAWS = {"bert": 8, "gpt2": 7, "vit": 7}


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("kind", KINDS)
def test_eval_outputs_and_state_dict_unchanged_and_no_warning(kind, impl):
    model = hf_model(kind, impl)
    ref = copy.deepcopy(model).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        droplab.replace_dropout(model, seed=0)
    assert len(A.routed_modules(model)) == 2  # one attention module per layer
    x = hf_input(kind)
    with torch.no_grad():
        assert torch.equal(model.eval()(x).logits, ref(x).logits)
    sd, rd = model.state_dict(), ref.state_dict()
    assert sd.keys() == rd.keys() and all(torch.equal(sd[k], rd[k]) for k in sd)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("kind", KINDS)
def test_every_dropout_draws_from_droplab(kind, impl):
    model = droplab.replace_dropout(hf_model(kind, impl), seed=0).train()
    x = hf_input(kind)
    torch.manual_seed(1)
    a = model(x).logits
    assert dropout_count(model) == DRAWS[kind]
    for m in model.modules():
        if isinstance(getattr(m, "step", None), int):
            m.step = 0
    for _, m in A.routed_modules(model):
        m.forward.router.step = 0
    torch.manual_seed(2)  # torch's RNG no longer matters
    assert torch.equal(a, model(x).logits)


@pytest.mark.parametrize("kind", KINDS)
def test_sdpa_and_eager_draw_the_same_attention_mask(kind):
    # the same seed routes the same mask to SDPA's probabilities and to the eager F.dropout of
    # the attention weights (both (B, heads, L, S)): the two implementations agree in training
    x, kw = hf_input(kind), {}
    if kind == "bert":  # with padding: a mask through both paths
        kw["attention_mask"] = (torch.arange(SEQ) < 12).long().expand(BATCH, SEQ)
    outs = []
    for impl in IMPLS:
        model = droplab.replace_dropout(hf_model(kind, impl, p=0.2), seed=3)
        outs.append(model.train()(x, **kw).logits)
        with torch.no_grad():
            assert not torch.allclose(outs[-1], model.eval()(x, **kw).logits)
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", KINDS)
def test_seeded_training_is_repeatable_end_to_end(kind):
    base = hf_model(kind)
    runs = {}
    for name, seed, torch_seed in [("a", 0, 0), ("a again", 0, 7), ("b", 1, 0)]:
        model = droplab.replace_dropout(copy.deepcopy(base), seed=seed)
        runs[name] = train_losses(model, kind, torch_seed=torch_seed)
    assert runs["a"] == runs["a again"]
    assert all(a != b for a, b in zip(runs["a"], runs["b"]))
    # and the torch model's losses do depend on torch's RNG
    assert train_losses(copy.deepcopy(base), kind, 2, 0) != train_losses(
        copy.deepcopy(base), kind, 2, 7
    )


@pytest.mark.parametrize("kind", ["bert", "gpt2"])
def test_restore_dropout_gives_back_the_torch_model(kind):
    model = hf_model(kind)
    modules = {n: m for n, m in model.named_modules()}
    droplab.replace_dropout(model, seed=0)
    assert restore_dropout(model) is model
    assert A.routed_modules(model) == []
    assert all(modules[n] is m for n, m in model.named_modules())  # the same objects back
    x = hf_input(kind)
    model.train()
    torch.manual_seed(3)
    a = model(x).logits
    torch.manual_seed(3)
    assert torch.equal(a, model(x).logits)  # torch's RNG again


# ----------------------------------------------------------------------------------------------
# timm-style ViT and DropPath
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fused", [True, False])
def test_timm_style_vit(fused):
    torch.manual_seed(0)
    model = timm_like.VisionTransformer(depth=3, fused=fused)
    rates = [m.drop_prob for m in model.modules() if isinstance(m, timm_like.DropPath)]
    ref = copy.deepcopy(model).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        droplab.replace_dropout(model, seed=0)
    paths = [m for m in model.modules() if isinstance(m, droplab.DropPath)]
    # depth 3: drop-path rates 0, 0.05, 0.1; the first block has Identity, as in timm
    assert [(m.p, m.scale_by_keep) for m in paths] == [(r, True) for r in rates]
    assert rates == pytest.approx([0.05, 0.05, 0.1, 0.1])
    assert not any(isinstance(m, (nn.Dropout, timm_like.DropPath)) for m in model.modules())
    x = torch.randn(4, 3, 16, 16)
    assert torch.equal(model.eval()(x), ref(x))
    model.train()
    torch.manual_seed(1)
    a = model(x)
    # pos_drop, 3 x (proj_drop, drop1, drop2, attention), head_drop; drop paths: 2 x 2
    assert dropout_count(model) == 1 + 3 * 4 + 1 + 2 * 2
    for m in model.modules():
        if hasattr(m, "step") and isinstance(m.step, int):
            m.step = 0
    for _, m in A.routed_modules(model):
        m.forward.router.step = 0
    torch.manual_seed(2)
    assert torch.equal(a, model(x))


@pytest.mark.parametrize("scale_by_keep", [True, False])
def test_timm_drop_path_is_swapped_with_the_same_semantics(scale_by_keep):
    p, n = 0.3, 4000
    timm_dp = timm_like.DropPath(p, scale_by_keep=scale_by_keep)
    ours = droplab.replace_dropout(nn.Sequential(timm_dp))[0]
    assert type(ours) is droplab.DropPath and ours.p == p and ours.scale_by_keep == scale_by_keep
    x = torch.randn(n, 5)
    for m in (timm_dp, ours):
        y = m.train()(x)
        kept = (y != 0).all(1)
        dropped = (y == 0).all(1)
        assert bool((kept | dropped).all())  # whole samples
        # kept samples: x / (1 - p) to the rounding of the scale (timm rounds 1 / keep_prob)
        want = x / (1 - p) if scale_by_keep else x
        torch.testing.assert_close(y[kept], want[kept], rtol=2.5e-7, atol=0)
        rate = dropped.float().mean().item()
        assert abs(rate - p) <= 5 * math.sqrt(p * (1 - p) / n)
        assert torch.equal(m.eval()(x), x)
    for m in (timm_like.DropPath(1.0, scale_by_keep), droplab.DropPath(1.0, scale_by_keep)):
        assert torch.equal(m.train()(x), torch.zeros_like(x))


# ----------------------------------------------------------------------------------------------
# Monte-Carlo dropout on real models
# ----------------------------------------------------------------------------------------------


def last_token(out):
    return out.logits[:, -1]


@pytest.mark.parametrize(
    ("kind", "output", "classes"),
    [("bert", None, 3), ("bert", "logits", 3), ("gpt2", last_token, VOCAB), ("vit", None, 3)],
)
def test_mc_predict_on_model_outputs(kind, output, classes):
    model = hf_model(kind).eval()
    x = hf_input(kind)
    out = droplab.mc_predict(model, x, samples=6, seed=0, output=output)
    assert out.mean.shape == (BATCH, classes)
    torch.testing.assert_close(out.mean.sum(1), torch.ones(BATCH), atol=1e-5, rtol=0)
    assert float(out.mutual_info.max()) > 0  # passes differ: dropout sampled
    again = droplab.mc_predict(model, x, samples=6, seed=0, output=output)
    assert torch.equal(out.mean, again.mean)
    assert not model.training


def test_mc_predict_on_a_tuple_output_picks_by_index():
    model = hf_model("bert").eval()
    model.config.return_dict = False
    x = hf_input("bert")
    assert isinstance(model(x), tuple)
    by_index = droplab.mc_predict(model, x, samples=4, seed=0, output=0)
    model.config.return_dict = True
    by_key = droplab.mc_predict(model, x, samples=4, seed=0, output="logits")
    assert torch.equal(by_index.mean, by_key.mean)


def test_mc_predict_without_dropout_is_the_eval_softmax():
    model = hf_model("bert", p=0.0).eval()
    x = hf_input("bert")
    with pytest.warns(RuntimeWarning, match="identical outputs"):
        out = droplab.mc_predict(model, x, samples=3, seed=0)
    with torch.no_grad():
        want = model(x).logits.softmax(-1)
    torch.testing.assert_close(out.mean, want, atol=1e-6, rtol=0)


def attention_only_bert() -> nn.Module:
    """BERT whose only dropout is on the attention probabilities."""
    model = hf_model("bert", p=0.0)
    for m in model.modules():
        if hasattr(m, "attention_head_size"):  # BertSelfAttention
            m.dropout.p = 0.3
    return model.eval()


def test_mc_dropout_samples_routed_attention_dropout_and_restores_everything():
    model = droplab.replace_dropout(attention_only_bert(), seed=0)
    routers = [m.forward.router for _, m in A.routed_modules(model)]
    routers[0].step = 5
    flags = [m.training for m in model.modules()]
    x = hf_input("bert")
    out = droplab.mc_predict(model, x, samples=8, seed=0)
    assert float(out.mutual_info.max()) > 0  # only the attention dropout can make passes differ
    assert [r.step for r in routers] == [5, 0]
    assert [m.training for m in model.modules()] == flags
    with droplab.mc_dropout(model):
        on = {n for n, m in model.named_modules() if m.training}
    assert on == {n for n, _ in A.routed_modules(model)} | {
        n for n, m in model.named_modules() if isinstance(m, droplab.Dropout)
    }
    # seeded routers: the same samples again
    assert torch.equal(droplab.mc_predict(model, x, samples=8, seed=0).mean, out.mean)


def test_mc_dropout_leaves_unrouted_attention_in_eval():
    model = attention_only_bert()
    with pytest.warns(RuntimeWarning, match="identical outputs"):
        droplab.mc_predict(model, hf_input("bert"), samples=3, seed=0)
