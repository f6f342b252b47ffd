"""The dropout overhead of a training step on real models: droplab (after replace_dropout) vs torch.

For Hugging Face BERT (4 layers x 256, batch 8 x 128 tokens), GPT-2 (4 x 256, the same batch,
an 8,192-token vocabulary so that the LM head does not dwarf the rest) and a small ViT (4 x 256,
224 x 224 images in 16 x 16 patches, batch 8), built from configs (no download), float32 on the
CPU, four copies of the same weights take SGD training steps (zero_grad, forward, loss,
backward, step), interleaved round after round:

    torch p     the model as built, its dropout rates (0.1 everywhere, attention included)
    torch 0     the same model with every rate 0 (PyTorch's fused attention kernel runs)
    droplab p   torch p after droplab.replace_dropout(seed=0): droplab modules, routed attention
    droplab 0   torch 0 after replace_dropout (routing in place, nothing dropped)

The dropout overhead of a step is the step time with the rates minus the step time with every
rate 0. droplab's is measured against torch's rate-0 step (so it includes the cost of the
routing itself, "droplab 0 - torch 0", shown too). Each step is timed by two clocks: the CPU
time of the process (``time.process_time``; with one thread, what the step costs even while
other work holds a core of a shared machine) and the wall clock; best of the rounds and the
median of each are reported; the target is droplab's overhead at most 1/5 of
torch's. With ``--compile``, the compiled replaced model's step against the compiled
original's (``torch.compile``, default mode), the same way.

Whole steps on a shared machine are noisy (a few percent of a step is the whole overhead), so
each model is also measured op by op ("components"): the dropout of one training step, forward
and backward, with the model's own shapes (read by running it once), timed many times: the
attention (PyTorch's SDPA at rate 0, at rate p, and droplab's at rate p) and every hidden
dropout (against the identity).

Usage: python benchmarks/models_overhead.py [--models bert gpt2 vit] [--rounds 7]
       [--threads 1] [--compile]
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import warnings

import torch
from torch import nn

from droplab._timer import timings_of_each
from droplab.studies.bench import machine_line

os.environ.setdefault("HF_HUB_OFFLINE", "1")

BATCH, SEQ, P = 8, 128, 0.1


def build(kind: str, p: float) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """(model, input, target) with every dropout rate ``p``; the same weights for every ``p``."""
    import transformers

    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    if kind == "bert":
        config = transformers.BertConfig(
            hidden_size=256, num_hidden_layers=4, num_attention_heads=4, intermediate_size=1024,
            hidden_dropout_prob=p, attention_probs_dropout_prob=p, num_labels=2,
        )  # fmt: skip
        model = transformers.BertForSequenceClassification(config)
        x = torch.randint(0, config.vocab_size, (BATCH, SEQ), generator=g)
        y = torch.randint(0, 2, (BATCH,), generator=g)
    elif kind == "gpt2":
        config = transformers.GPT2Config(
            vocab_size=8192, n_positions=SEQ, n_embd=256, n_layer=4, n_head=4,
            resid_pdrop=p, embd_pdrop=p, attn_pdrop=p, bos_token_id=0, eos_token_id=0,
        )  # fmt: skip
        model = transformers.GPT2LMHeadModel(config)
        x = torch.randint(0, config.vocab_size, (BATCH, SEQ), generator=g)
        y = x
    else:
        config = transformers.ViTConfig(
            image_size=224, patch_size=16, hidden_size=256, num_hidden_layers=4,
            num_attention_heads=4, intermediate_size=1024, num_labels=10,
            hidden_dropout_prob=p, attention_probs_dropout_prob=p,
        )  # fmt: skip
        model = transformers.ViTForImageClassification(config)
        x = torch.randn(BATCH, 3, 224, 224, generator=g)
        y = torch.randint(0, 10, (BATCH,), generator=g)
    model.config._attn_implementation = "sdpa"
    return model.train(), x, y


def loss_fn(kind, model, x, y):
    logits = model(x).logits
    if kind == "gpt2":
        v = logits.shape[-1]
        return nn.functional.cross_entropy(logits[:, :-1].reshape(-1, v), y[:, 1:].reshape(-1))
    return nn.functional.cross_entropy(logits, y)


def stepper(kind, model, x, y):
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(kind, model, x, y)
        loss.backward()
        opt.step()

    return step


def variants(kind: str, compiled: bool) -> dict:
    import droplab

    with_p, x, y = build(kind, P)
    zero, _, _ = build(kind, 0.0)
    zero.load_state_dict(with_p.state_dict())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours_p = droplab.replace_dropout(copy.deepcopy(with_p), seed=0)
        ours_0 = droplab.replace_dropout(copy.deepcopy(zero), seed=0)
    models = {"torch p": with_p, "torch 0": zero, "droplab p": ours_p, "droplab 0": ours_0}
    if compiled:
        models = {"torch p": with_p, "droplab p": ours_p}
        models = {k: torch.compile(m) for k, m in models.items()}
    return {name: stepper(kind, m, x, y) for name, m in models.items()}


def report(kind: str, times: dict, compiled: bool) -> None:
    rounds = len(next(iter(times.values()))["cpu"])
    print(f"\n{kind} ({rounds} rounds), ms per training step:")
    for k, t in times.items():
        print(
            f"  {k:10s} cpu best {min(t['cpu']) * 1e3:7.1f} median "
            f"{statistics.median(t['cpu']) * 1e3:7.1f} | wall best {min(t['wall']) * 1e3:7.1f} "
            f"median {statistics.median(t['wall']) * 1e3:7.1f}"
        )
    if not compiled:
        paired(times)
    for clock in ("cpu", "wall"):
        for label, stat in (("best", min), ("median", statistics.median)):
            s = {k: stat(t[clock]) for k, t in times.items()}
            head = f"  {clock} {label:6s}:"
            if compiled:
                print(
                    f"{head} compiled droplab p / compiled torch p {s['droplab p'] / s['torch p']:.3f}"
                )
                continue
            ours = s["droplab p"] - s["torch 0"]
            theirs = s["torch p"] - s["torch 0"]
            routing = s["droplab 0"] - s["torch 0"]
            print(
                f"{head} overhead torch {theirs * 1e3:6.1f} ms ({theirs / s['torch 0']:6.1%}), "
                f"droplab {ours * 1e3:6.1f} ms ({ours / s['torch 0']:6.1%}), "
                f"droplab/torch {ours / theirs:5.2f} (target <= 0.20); routing alone "
                f"{routing * 1e3:5.1f} ms; step droplab p / torch p {s['droplab p'] / s['torch p']:.3f}"
            )


def paired(times: dict) -> None:
    """The overheads as medians of per-round differences: each round runs the four steps back to
    back, so a round-to-round drift of the machine (a neighbour's load, the CPU's clock) cancels
    in each difference, which best-of and median-of-steps figures do not do."""
    for clock in ("cpu", "wall"):
        t = {k: v[clock] for k, v in times.items()}
        diff = {k: [a - b for a, b in zip(t[k], t["torch 0"])] for k in ("torch p", "droplab p")}
        theirs, ours = (statistics.median(diff[k]) for k in ("torch p", "droplab p"))
        q = {k: statistics.quantiles(v, n=4) for k, v in diff.items()}
        print(
            f"  {clock} paired median: overhead torch {theirs * 1e3:6.1f} ms (IQR "
            f"{q['torch p'][0] * 1e3:.1f} to {q['torch p'][2] * 1e3:.1f}), droplab "
            f"{ours * 1e3:6.1f} ms (IQR {q['droplab p'][0] * 1e3:.1f} to "
            f"{q['droplab p'][2] * 1e3:.1f}), droplab/torch {ours / theirs:5.2f} (target <= 0.20)"
        )


def dropout_shapes(kind: str) -> tuple[list[tuple[int, ...]], tuple[int, ...], int]:
    """(input shapes of the model's dropout modules in one training forward, the attention
    q/k/v shape, the number of attention layers), read by running the model once."""
    model, x, y = build(kind, P)
    shapes = []
    for m in model.modules():
        if isinstance(m, nn.Dropout):
            m.register_forward_hook(lambda mod, inp, out: shapes.append(tuple(inp[0].shape)))
    seen = []
    sdpa = nn.functional.scaled_dot_product_attention

    class Spy(torch.overrides.TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            if func is sdpa:
                seen.append(tuple(args[0].shape))
            return func(*args, **(kwargs or {}))

    with Spy():
        loss_fn(kind, model, x, y)
    return shapes, seen[0], len(seen)


def components(kind: str, rounds: int) -> None:
    """The dropout of one training step, op by op (forward + backward), many times: the
    overhead without the noise of whole steps. Attention: SDPA at rate 0 (PyTorch's fused
    kernel), torch's SDPA at rate p, droplab's; hidden: dropout against the identity."""
    import droplab
    from droplab.attention import scaled_dot_product_attention

    shapes, qkv, layers = dropout_shapes(kind)
    b, h, length, d = qkv
    # as the models make them: (B, L, H * D) projections viewed as (B, H, L, D), not contiguous
    q, k, v = (
        torch.randn(b, length, h * d).view(b, length, h, d).transpose(1, 2).requires_grad_()
        for _ in range(3)
    )
    leaves = [torch.randn(s, requires_grad=True) for s in shapes]
    sdpa = nn.functional.scaled_dot_product_attention

    def fwd_bwd(fn, *xs):
        def run():
            fn(*xs).sum().backward()

        return run

    ops = {
        "attn p=0": fwd_bwd(lambda a, b, c: sdpa(a, b, c), q, k, v),
        "attn torch": fwd_bwd(lambda a, b, c: sdpa(a, b, c, dropout_p=P), q, k, v),
        "attn droplab": fwd_bwd(
            lambda a, b, c: scaled_dot_product_attention(a, b, c, dropout_p=P, seed=1), q, k, v
        ),
        "hidden identity": lambda: [fwd_bwd(lambda t: t * 1.0, t)() for t in leaves],
        "hidden torch": lambda: [
            fwd_bwd(lambda t: nn.functional.dropout(t, P, True), t)() for t in leaves
        ],
        "hidden droplab": lambda: [
            fwd_bwd(lambda t: droplab.dropout(t, P, True, seed=1), t)() for t in leaves
        ],
    }
    times = timings_of_each(ops, rounds, warmup=2)
    best = {name: min(t["cpu"]) for name, t in times.items()}
    torch_attn = layers * (best["attn torch"] - best["attn p=0"])
    ours_attn = layers * (best["attn droplab"] - best["attn p=0"])
    torch_hidden = best["hidden torch"] - best["hidden identity"]
    ours_hidden = best["hidden droplab"] - best["hidden identity"]
    print(
        f"  components (cpu best of {rounds}, fwd+bwd): attention {layers} x {qkv}: torch "
        f"{torch_attn * 1e3:.1f} ms, droplab {ours_attn * 1e3:.1f} ms; "
        f"{len(shapes)} hidden dropouts: torch {torch_hidden * 1e3:.1f} ms, "
        f"droplab {ours_hidden * 1e3:.1f} ms\n"
        f"  components total: torch {(torch_attn + torch_hidden) * 1e3:.1f} ms, droplab "
        f"{(ours_attn + ours_hidden) * 1e3:.1f} ms, droplab/torch "
        f"{(ours_attn + ours_hidden) / (torch_attn + torch_hidden):.2f} (target <= 0.20)"
    )


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["bert", "gpt2", "vit"])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--components", type=int, default=30, help="rounds of the op-by-op timing")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        import numba

        numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    except ImportError:
        pass
    print(machine_line())
    print(f"float32, CPU, batch {BATCH}, dropout rates {P}, compile={args.compile}")
    for kind in args.models:
        try:
            steps = variants(kind, args.compile)
            times = timings_of_each(steps, args.rounds, warmup=2 if not args.compile else 3)
        except Exception as e:  # a compile failure is a result to report, not a crash
            print(f"\n{kind}: failed: {type(e).__name__}: {str(e).splitlines()[0][:300]}")
            continue
        report(kind, times, args.compile)
        if not args.compile and args.components:
            components(kind, args.components)


if __name__ == "__main__":
    main()
