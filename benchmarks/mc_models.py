"""Monte-Carlo dropout on real models, T = 20: droplab.mc_predict against baal's MC wrapper.

The models of ``models_overhead.py`` (Hugging Face BERT 4 x 256 on 8 x 128 tokens, GPT-2 4 x 256
scored on its last token, a ViT 4 x 256 on 8 images of 224 x 224), float32, CPU, dropout rates
0.1, each behind a small module returning the logits tensor (baal's wrapper needs a tensor).
Three samplers, interleaved round after round, best of the rounds and median reported (CPU
time of the process and wall clock, as in ``models_overhead.py``):

    baal        baal.bayesian.dropout.MCDropoutModule(model) and
                baal.modelwrapper.ModelWrapper(...).predict_on_batch(x, iterations=20)
                (the batch stacked 20 times, one forward), then softmax, mean, entropy and BALD
    baal loop   the same with ``replicate_in_memory=False``: 20 forwards of the batch
    droplab     droplab.mc_predict(model, x, samples=20, seed=0) on the same torch model
    droplab+    droplab.mc_predict on the model after droplab.replace_dropout(seed=0): droplab's
                masks, and the attention dropout sampled too (more dropout than baal samples)
    no dropout  the floor: the same forward of the model with every rate 0 (dropout costs
                nothing) and the same summary, stacked (and "loop": 20 forwards of the batch).
                No sampler that runs the model's forward T times can beat the faster of the
                two, so baal / floor bounds the speed-up any of them can reach

What is compared, and why:

- baal and droplab on the torch model draw the same masks: both stack the batch pass-major
  and call torch's dropout in the same order after ``torch.manual_seed(0)``. So their mean
  probabilities, predictive entropy and mutual information must agree to float rounding
  (target 1e-6): the max absolute differences are printed.
- droplab+ draws other masks (and samples attention dropout): only statistically comparable.
  Printed: the largest |z| of the difference of the two MC means, per entry, with the standard
  error of each mean from its own samples, and the share of entries with |z| < 3.
- Eval-mode logits of the replaced model equal the original's exactly (printed True/False).

Target: droplab at least 2x faster than baal. Usage:
python benchmarks/mc_models.py [--models bert gpt2 vit] [--rounds 5] [--threads 1] [--samples 20]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import warnings

import torch
from models_overhead import build
from torch import nn

from droplab._timer import timings_of_each
from droplab.studies.bench import machine_line


class Logits(nn.Module):
    """The model's logits as a tensor (the last token's for a language model)."""

    def __init__(self, model: nn.Module, last_token: bool):
        super().__init__()
        self.model = model
        self.last_token = last_token

    def forward(self, x):
        logits = self.model(x).logits
        return logits[:, -1] if self.last_token else logits


def summarize(logits: torch.Tensor) -> dict[str, torch.Tensor]:
    """baal's output (N, C, T) logits -> mean probabilities, entropy, BALD (float64 sums)."""
    probs = logits.softmax(1).double()  # (N, C, T)
    mean = probs.mean(2)
    entropy = -(mean * mean.clamp_min(1e-300).log()).sum(1)
    expected = -(probs * probs.clamp_min(1e-300).log()).sum(1).mean(1)
    return {"mean": mean, "entropy": entropy, "mutual_info": entropy - expected, "probs": probs}


def compare(kind: str, T: int, rounds: int) -> None:
    """Time the three samplers on one model and print what they agree on."""
    from baal.bayesian.dropout import MCDropoutModule
    from baal.modelwrapper import ModelWrapper, TrainingArgs

    import droplab

    model, x, _ = build(kind, 0.1)
    plain = Logits(model, kind == "gpt2").eval()
    zero = Logits(build(kind, 0.0)[0], kind == "gpt2").eval()
    zero.load_state_dict(plain.state_dict())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = droplab.replace_dropout(copy.deepcopy(plain), seed=0).eval()
    theirs = MCDropoutModule(copy.deepcopy(plain)).eval()
    wrapper = ModelWrapper(theirs, TrainingArgs(use_cuda=False, replicate_in_memory=True))
    looped = ModelWrapper(theirs, TrainingArgs(use_cuda=False, replicate_in_memory=False))
    with torch.no_grad():
        same_eval = torch.equal(ours(x), plain(x))
    results = {}

    def run_baal():
        torch.manual_seed(0)
        results["baal"] = summarize(wrapper.predict_on_batch(x, iterations=T))

    def run_baal_loop():
        torch.manual_seed(0)
        results["baal loop"] = summarize(looped.predict_on_batch(x, iterations=T))

    def run_droplab():
        results["droplab"] = droplab.mc_predict(plain, x, samples=T, seed=0, keep_samples=True)

    def run_droplab_plus():
        results["droplab+"] = droplab.mc_predict(ours, x, samples=T, seed=0, keep_samples=True)

    def run_floor():
        with torch.no_grad():
            stacked = x.repeat(T, *([1] * (x.dim() - 1)))  # pass-major, as the samplers stack
            logits = zero(stacked).view(T, x.shape[0], -1).permute(1, 2, 0)  # (N, C, T)
        summarize(logits)

    def run_floor_loop():
        with torch.no_grad():
            logits = torch.stack([zero(x) for _ in range(T)], dim=-1)  # (N, C, T)
        summarize(logits)

    steps = {
        "baal": run_baal,
        "baal loop": run_baal_loop,
        "droplab": run_droplab,
        "droplab+": run_droplab_plus,
        "no dropout": run_floor,
        "no dropout loop": run_floor_loop,
    }
    times = timings_of_each(steps, rounds, warmup=1)
    print(f"\n{kind}: {x.shape[0]} inputs x {T} passes, seconds ({rounds} rounds)")
    for clock in ("cpu", "wall"):
        best = {k: min(t[clock]) for k, t in times.items()}
        med = {k: statistics.median(t[clock]) for k, t in times.items()}
        for k in steps:
            print(
                f"  {clock:4s} {k:15s} best {best[k]:7.3f}   median {med[k]:7.3f}   "
                f"speed-up vs baal: best {best['baal'] / best[k]:5.2f}x, "
                f"median {med['baal'] / med[k]:5.2f}x (target >= 2)"
            )
    floor = {
        c: min(min(times[k][c]) for k in ("no dropout", "no dropout loop")) for c in times["baal"]
    }
    print(
        f"  bound: any sampler running this forward is at most "
        f"{min(times['baal']['cpu']) / floor['cpu']:.2f}x (cpu) / "
        f"{min(times['baal']['wall']) / floor['wall']:.2f}x (wall) faster than baal"
    )
    b, d, dp = results["baal"], results["droplab"], results["droplab+"]
    diffs = {
        k: float((getattr(d, k).double() - b[k]).abs().max())
        for k in ("mean", "entropy", "mutual_info")
    }
    print(
        "  droplab vs baal, same masks: max |diff| "
        + ", ".join(f"{k} {v:.2e}" for k, v in diffs.items())
        + f" (target 1e-6): {'agree' if max(diffs.values()) <= 1e-6 else 'DISAGREE'}"
    )
    # droplab+ vs baal: other masks; z of the difference of the MC means, entry by entry
    sp = dp.samples.double()  # (T, N, C) probabilities
    se = (sp.var(0) / T + b["probs"].var(2) / T).sqrt().clamp_min(1e-12)
    z = (sp.mean(0) - b["mean"]).abs() / se
    print(
        f"  droplab+ vs baal, other masks (+ attention dropout): max |z| {float(z.max()):.2f}, "
        f"|z| < 3 for {float((z < 3).double().mean()):.1%} of {z.numel()} entries; "
        f"max |mean diff| {float((sp.mean(0) - b['mean']).abs().max()):.3e}"
    )
    print(f"  eval logits of the replaced model == the original's: {same_eval}")


def main(argv=None) -> None:
    import importlib.metadata

    import numba

    import droplab

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["bert", "gpt2", "vit"])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--samples", type=int, default=20)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    print(machine_line())
    print(
        f"float32, CPU, T = {args.samples}, baal {importlib.metadata.version('baal')}, droplab {droplab.__version__}"
    )
    for kind in args.models:
        compare(kind, args.samples, args.rounds)


if __name__ == "__main__":
    main()
