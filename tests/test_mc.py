"""Monte-Carlo dropout: mode switching, sampling, and the uncertainty and calibration metrics."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from torch import nn

import droplab
from droplab import mc
from droplab.mc import fast as mc_fast
from droplab.mc import mc_dropout, mc_predict
from droplab.mc import sampling as mc_sampling
from droplab.mc import summary as mc_summary


def mlp(p=0.5, *, bn=False, d=6, h=32, c=4, seed=0):
    torch.manual_seed(seed)
    layers = [nn.Linear(d, h)]
    if bn:
        layers.append(nn.BatchNorm1d(h))
    layers += [nn.ReLU(), nn.Dropout(p), nn.Linear(h, c)]
    return nn.Sequential(*layers)


class RandDropout(nn.Module):
    """A dropout module of the kind droplab ships (``stochastic = True``), drawing its mask with
    ``torch.rand``: element by element from torch's generator on every CPU."""

    stochastic = True

    def __init__(self, p):
        super().__init__()
        self.p = p

    def forward(self, x):
        if not self.training:
            return x
        return x * (torch.rand(x.shape) >= self.p) / (1 - self.p)


class FunctionalDropout(nn.Module):
    """The trap: functional dropout tied to the parent's mode, which mc_dropout cannot switch."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(6, 3)

    def forward(self, x):
        return self.fc(nn.functional.dropout(x, 0.5, training=self.training))


# ----------------------------------------------------------------------------------------------
# mc_dropout: modes
# ----------------------------------------------------------------------------------------------


def test_only_dropout_samples_batchnorm_stays_eval():
    net = mlp(bn=True)
    net.train()
    with mc_dropout(net) as m:
        assert m is net
        assert [x.training for x in net] == [False, False, False, True, False]
        assert not net.training
    assert all(x.training for x in net.modules())


def test_restores_exact_mixed_modes():
    net = mlp(bn=True)
    net.train()
    net[1].eval()  # a frozen BatchNorm inside a model in training
    net[3].eval()
    before = [x.training for x in net.modules()]
    with mc_dropout(net):
        pass
    assert [x.training for x in net.modules()] == before


def test_restores_after_an_exception():
    net = mlp(bn=True).eval()
    before = [x.training for x in net.modules()]
    with pytest.raises(KeyError), mc_dropout(net):
        assert net[3].training and not net[1].training
        raise KeyError("boom")
    assert [x.training for x in net.modules()] == before


def test_batchnorm_running_stats_untouched():
    net = mlp(bn=True).eval()
    stats = net[1].running_mean.clone()
    mc_predict(net, torch.randn(8, 6), 10, seed=0)
    assert torch.equal(net[1].running_mean, stats)


@pytest.mark.parametrize(
    "module",
    [
        nn.Dropout(0.3),
        nn.Dropout1d(0.3),
        nn.Dropout2d(0.3),
        nn.Dropout3d(0.3),
        nn.AlphaDropout(0.3),
        nn.FeatureAlphaDropout(0.3),
        RandDropout(0.3),
    ],
    ids=lambda m: type(m).__name__,
)
def test_finds_every_dropout_kind(module):
    net = nn.Sequential(nn.Linear(3, 3), module).eval()
    with mc_dropout(net):
        assert module.training and not net[0].training
    assert not module.training


def test_finds_droplab_modules():
    net = nn.Sequential(nn.Linear(3, 3), droplab.Dropout(0.3)).eval()
    with mc_dropout(net):
        assert net[1].training


def test_seeded_droplab_step_counter_restored():
    layer = droplab.Dropout(0.5, seed=7)
    net = nn.Sequential(nn.Linear(4, 4), layer).eval()
    layer.step = 3
    with mc_dropout(net):
        net(torch.ones(2, 4))
        net(torch.ones(2, 4))
    assert layer.step == 3
    a = mc_predict(net, torch.ones(5, 4), 8, task="regress")
    b = mc_predict(net, torch.ones(5, 4), 8, task="regress")
    assert torch.equal(a.mean, b.mean) and float(a.variance.max()) > 0


def test_warns_without_dropout():
    net = nn.Sequential(nn.Linear(3, 3))
    with pytest.warns(RuntimeWarning, match="no dropout module"), mc_dropout(net):
        pass


def test_warns_when_passes_are_identical():
    with warnings.catch_warnings(), pytest.warns(RuntimeWarning, match="identical outputs"):
        warnings.filterwarnings("ignore", message="mc_dropout: .* has no dropout module")
        mc_predict(FunctionalDropout(), torch.randn(4, 6), 5)


def test_no_identical_warning_with_active_dropout():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mc_predict(mlp(), torch.randn(4, 6), 5, seed=0)


# ----------------------------------------------------------------------------------------------
# mc_predict: sampling
# ----------------------------------------------------------------------------------------------


def test_shapes_and_bounds_classify():
    C = 4
    out = mc_predict(mlp(c=C), torch.randn(50, 6) * 3, 40, seed=0)
    assert out.mean.shape == (50, C) and out.variance.shape == (50, C)
    assert out.entropy.shape == (50,) and out.mutual_info.shape == (50,)
    assert torch.allclose(out.mean.sum(1), torch.ones(50), atol=1e-5)
    assert (out.entropy >= 0).all() and (out.entropy <= math.log(C) + 1e-6).all()
    assert (out.mutual_info >= 0).all() and (out.mutual_info <= out.entropy).all()
    assert out.mutual_info.max() > 0
    assert (out.variance >= 0).all() and (out.variance <= 0.25).all()
    assert out.prediction.shape == (50,)


def test_bounds_at_the_extremes():
    # a uniform predictor: H = log C, BALD = 0; a certain one: H = BALD = 0
    class Const(nn.Module):
        def __init__(self, logits):
            super().__init__()
            self.logits = logits
            self.drop = nn.Dropout(0.5)

        def forward(self, x):
            return self.logits.expand(x.shape[0], -1) + 0 * self.drop(x).sum()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        flat = mc_predict(Const(torch.zeros(1, 5)), torch.ones(3, 2), 4)
        sure = mc_predict(Const(torch.tensor([[0.0, 200.0, 0.0]])), torch.ones(3, 2), 4)
    assert torch.allclose(flat.entropy, torch.full((3,), math.log(5)))
    assert torch.allclose(flat.mutual_info, torch.zeros(3), atol=1e-7)
    assert torch.allclose(sure.entropy, torch.zeros(3), atol=1e-7)
    assert (sure.mutual_info == 0).all()


def test_entropy_and_bald_match_their_definitions():
    net, x = mlp(), torch.randn(9, 6)
    out = mc_predict(net, x, 30, seed=3, keep_samples=True)
    p = out.samples.double()  # (T, N, C)
    pbar = p.mean(0)
    H = -(pbar * pbar.log()).sum(1)
    EH = -(p * p.log()).sum(2).mean(0)
    torch.testing.assert_close(out.mean.double(), pbar, rtol=0, atol=1e-6)
    torch.testing.assert_close(out.entropy.double(), H, rtol=0, atol=1e-5)
    torch.testing.assert_close(out.mutual_info.double(), (H - EH).clamp(min=0), rtol=0, atol=1e-5)
    torch.testing.assert_close(out.variance.double(), p.var(0, unbiased=False), rtol=0, atol=1e-6)


def test_seeded_runs_repeat_and_leave_global_rng_alone():
    net, x = mlp(), torch.randn(10, 6)
    torch.manual_seed(123)
    state = torch.get_rng_state()
    a = mc_predict(net, x, 20, seed=5)
    assert torch.equal(torch.get_rng_state(), state)
    b = mc_predict(net, x, 20, seed=5, batch_size=7)
    c = mc_predict(net, x, 20, seed=6)
    torch.testing.assert_close(a.mean, b.mean, rtol=0, atol=1e-6)  # chunking: GEMM rounding only
    assert not torch.allclose(a.mean, c.mean)


def looped(net, x, T, seed):
    """The reference: a Python loop of T passes drawing from the same seeded stream."""
    torch.manual_seed(seed)
    with mc_dropout(net), torch.no_grad():
        return torch.stack([torch.softmax(net(x), -1) for _ in range(T)])


@pytest.mark.parametrize("batch_size", [None, 1, 13, 40, 10_000])
def test_vectorized_equals_looped_same_seed(batch_size):
    """mc_predict orders the repeated batch pass-major, so a model whose one dropout layer draws
    its mask element by element from torch's generator gets the very same masks as a loop of
    passes; the outputs agree up to float rounding of matrix products of other shapes."""
    net = nn.Sequential(nn.Linear(6, 32), nn.ReLU(), RandDropout(0.5), nn.Linear(32, 4))
    x = torch.randn(8, 6)
    vec = mc_predict(net, x, 25, seed=11, batch_size=batch_size, keep_samples=True)
    ref = looped(net, x, 25, 11)
    torch.testing.assert_close(vec.samples, ref, rtol=0, atol=1e-5)
    torch.testing.assert_close(vec.mean, ref.mean(0), rtol=0, atol=1e-6)


def test_vectorized_equals_looped_torch_dropout():
    torch.manual_seed(0)
    serial = torch.equal(
        nn.functional.dropout(torch.ones(6, 5), 0.5),
        torch.cat([nn.functional.dropout(torch.ones(2, 5), 0.5) for _ in range(3)])
        if torch.manual_seed(0)
        else None,
    )
    if not serial:
        pytest.skip("this CPU's torch draws Bernoulli masks in parallel chunks (MKL)")
    net, x = mlp(), torch.randn(8, 6)
    vec = mc_predict(net, x, 25, seed=4, keep_samples=True)
    torch.testing.assert_close(vec.samples, looped(net, x, 25, 4), rtol=0, atol=1e-5)


def test_vectorized_matches_looped_in_distribution_with_two_layers():
    """With two dropout layers the stream is drawn in another order: same distribution."""
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Linear(6, 32),
        nn.ReLU(),
        nn.Dropout(0.5),
        nn.Linear(32, 32),
        nn.ReLU(),
        nn.Dropout(0.5),
        nn.Linear(32, 3),
    )
    x = torch.randn(4, 6)
    T = 800
    vec = mc_predict(net, x, T, seed=1, keep_samples=True).samples
    ref = looped(net, x, T, 2)
    se = (vec.var(0) / T + ref.var(0) / T).sqrt()
    assert ((vec.mean(0) - ref.mean(0)).abs() <= 5 * se + 1e-6).all()


def test_regression_variance_adds_inverse_tau():
    net = mlp(c=1)
    x = torch.randn(6, 6)
    plain = mc_predict(net, x, 50, seed=0, task="regress", keep_samples=True)
    noisy = mc_predict(net, x, 50, seed=0, task="regress", tau=4.0)
    y = plain.samples.double()
    torch.testing.assert_close(plain.mean.double(), y.mean(0), rtol=0, atol=1e-6)
    torch.testing.assert_close(plain.variance.double(), y.var(0, unbiased=False), rtol=0, atol=1e-5)
    torch.testing.assert_close(noisy.variance, plain.variance + 0.25, rtol=0, atol=1e-6)
    assert plain.entropy is None and plain.mutual_info is None


def test_bad_arguments():
    net, x = mlp(), torch.randn(3, 6)
    with pytest.raises(ValueError, match="task must be one of"):
        mc_predict(net, x, task="segment")
    with pytest.raises(ValueError, match="samples must be an integer >= 1"):
        mc_predict(net, x, 0)
    with pytest.raises(ValueError, match="batch_size"):
        mc_predict(net, x, batch_size=0)
    with pytest.raises(ValueError, match="tau is for task='regress'"):
        mc_predict(net, x, tau=1.0)
    with pytest.raises(ValueError, match="tau must be a positive"):
        mc_predict(net, x, task="regress", tau=-1.0)


def test_public_names():
    assert droplab.mc_dropout is mc_dropout and droplab.mc_predict is mc_predict


# ----------------------------------------------------------------------------------------------
# metrics
# ----------------------------------------------------------------------------------------------


def test_ece_of_a_calibrated_predictor_is_near_zero():
    # labels drawn from the predicted distribution itself: calibrated by construction
    g = torch.Generator().manual_seed(0)
    n, C = 200_000, 5
    probs = torch.softmax(torch.randn(n, C, generator=g) * 2, 1)
    labels = torch.multinomial(probs, 1, generator=g).squeeze(1)
    assert mc.ece(probs, labels) < 0.01


def test_ece_of_an_overconfident_predictor_by_hand():
    # 10 examples, all predicted with confidence 0.9 for class 0; 6 are class 0:
    # one bin, |acc - conf| = |0.6 - 0.9| = 0.3
    probs = torch.tensor([[0.9, 0.1]] * 10, dtype=torch.float64)
    labels = torch.tensor([0] * 6 + [1] * 4)
    assert mc.ece(probs, labels) == pytest.approx(0.3, abs=1e-12)
    # two bins: 4 at conf 0.95 (3 right), 6 at conf 0.7 (3 right):
    # 0.4 * |0.75 - 0.95| + 0.6 * |0.5 - 0.7| = 0.08 + 0.12 = 0.2
    probs = torch.tensor([[0.95, 0.05]] * 4 + [[0.3, 0.7]] * 6, dtype=torch.float64)
    labels = torch.tensor([0, 0, 0, 1] + [1, 1, 1, 0, 0, 0])
    assert mc.ece(probs, labels) == pytest.approx(0.2, abs=1e-12)
    r = mc.reliability(probs, labels, 10)
    assert sum(r["count"]) == 10 and r["count"][9] == 4 and r["count"][6] == 6


def test_nll_brier_accuracy_by_hand():
    probs = torch.tensor([[0.5, 0.25, 0.25], [0.1, 0.8, 0.1]])
    labels = torch.tensor([0, 2])
    assert mc.accuracy(probs, labels) == 0.5
    assert mc.nll(probs, labels) == pytest.approx(-(math.log(0.5) + math.log(0.1)) / 2)
    b1 = 0.5**2 + 0.25**2 + 0.25**2
    b2 = 0.1**2 + 0.8**2 + 0.9**2
    assert mc.brier(probs, labels) == pytest.approx((b1 + b2) / 2)


def test_auroc():
    assert mc.auroc([0.1, 0.2, 0.8, 0.9], [False, False, True, True]) == 1.0
    assert mc.auroc([0.9, 0.8, 0.2, 0.1], [False, False, True, True]) == 0.0
    assert mc.auroc([0.5, 0.5, 0.5, 0.5], [False, True, False, True]) == 0.5
    # 2 positives (0.3, 0.7) vs 2 negatives (0.5, 0.3): pairs 0.3>0.5 no, 0.3=0.3 half,
    # 0.7>0.5 yes, 0.7>0.3 yes -> 2.5 / 4
    assert mc.auroc([0.3, 0.7, 0.5, 0.3], [True, True, False, False]) == 0.625
    assert math.isnan(mc.auroc([0.1, 0.2], [True, True]))


def test_gaussian_log_likelihood_against_a_direct_computation():
    g = torch.Generator().manual_seed(0)
    T, N, tau = 7, 5, 2.5
    samples = torch.randn(T, N, generator=g, dtype=torch.float64)
    y = torch.randn(N, generator=g, dtype=torch.float64)
    # the density of a mixture of T Gaussians N(y_t, 1/tau), averaged in log over points
    direct = []
    for n in range(N):
        dens = (
            sum(
                math.sqrt(tau / (2 * math.pi)) * math.exp(-tau / 2 * (y[n] - samples[t, n]) ** 2)
                for t in range(T)
            )
            / T
        )
        direct.append(math.log(dens))
    per = mc.gaussian_log_likelihood(y, samples, tau, per_point=True)
    torch.testing.assert_close(per, torch.tensor(direct, dtype=torch.float64))
    assert mc.gaussian_log_likelihood(y, samples, tau) == pytest.approx(sum(direct) / N)


def test_rmse():
    assert mc.rmse([1.0, 2.0], [1.0, 4.0]) == pytest.approx(math.sqrt(2))


def test_metric_input_errors():
    with pytest.raises(ValueError, match="expected probs"):
        mc.ece(torch.ones(3), torch.ones(3))
    with pytest.raises(ValueError, match="no examples"):
        mc.accuracy(torch.ones(0, 2), torch.ones(0))


def test_deterministic_prefix_runs_once_and_changes_nothing():
    from droplab.mc.sampling import _deterministic_prefix

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Flatten(),
        torch.nn.Linear(12, 32),
        torch.nn.ReLU(),
        torch.nn.Dropout(0.5),
        torch.nn.Linear(32, 4),
    )
    prefix, rest = _deterministic_prefix(net)
    assert len(prefix) == 3 and isinstance(rest[0], torch.nn.Dropout)
    calls = []
    net[1].register_forward_hook(lambda m, i, o: calls.append(o.shape[0]))
    x = torch.randn(7, 3, 4)
    out = droplab.mc_predict(net, x, samples=30, seed=1, batch_size=70)
    assert calls == [7], "the layers before the first dropout run once, on the N inputs"
    # the same as repeating the whole model: same masks (drawn only after the prefix)
    with droplab.mc_dropout(net), torch.no_grad(), torch.random.fork_rng():
        torch.manual_seed(1)
        rows = torch.cat([net(x) for _ in range(30)])
    ref = torch.softmax(rows, -1).reshape(30, 7, 4).mean(0)
    torch.testing.assert_close(out.mean.float(), ref, rtol=1e-5, atol=1e-6)


def test_custom_modules_are_never_treated_as_deterministic():
    from droplab.mc.sampling import _deterministic_prefix

    class Noisy(torch.nn.Module):
        def forward(self, x):
            return x + torch.randn_like(x)

    net = torch.nn.Sequential(torch.nn.Linear(3, 3), Noisy(), torch.nn.Dropout(0.1))
    prefix, rest = _deterministic_prefix(net)
    assert len(prefix) == 1 and isinstance(rest[0], Noisy)
    noisy = Noisy()
    assert _deterministic_prefix(noisy) == (None, noisy)


# ----------------------------------------------------------------------------------------------
# mc_predict: the blocked fast path and the per-example sums
# ----------------------------------------------------------------------------------------------


def _module_path(monkeypatch, *args, **kwargs):
    """mc_predict with the fast path switched off: the modules called on each chunk."""
    with monkeypatch.context() as m:
        m.setattr(mc_sampling, "plan", lambda *a: None)
        return mc_predict(*args, **kwargs)


def _fast_nets():
    torch.manual_seed(0)
    return {
        "torch-2-dropouts": nn.Sequential(
            nn.Linear(6, 40),
            nn.ReLU(),
            nn.Dropout(0.3),
            nn.Linear(40, 24),
            nn.ReLU(),
            nn.Dropout(0.5),
            nn.Linear(24, 5),
        ),
        "droplab-seeded": nn.Sequential(
            nn.Linear(6, 40),
            nn.ReLU(),
            droplab.Dropout(0.5, seed=3),
            nn.Linear(40, 24, bias=False),
            nn.Tanh(),
            droplab.Dropout(0.2, mode="classic", seed=4),
            nn.Linear(24, 5),
        ),
        "mixed-unseeded": nn.Sequential(
            nn.Flatten(),
            nn.Linear(6, 40),
            nn.ReLU(),
            droplab.Dropout(0.4),
            nn.Linear(40, 32),
            nn.ELU(inplace=True),
            nn.Identity(),
            nn.Dropout(0.25),
            nn.Linear(32, 5),
        ),
        "starts-with-dropout": nn.Sequential(
            nn.Dropout(0.2), nn.Linear(6, 40), nn.ReLU(), droplab.Dropout(0.5), nn.Linear(40, 5)
        ),
    }


@pytest.mark.parametrize("name", list(_fast_nets()))
@pytest.mark.parametrize("batch_size,block", [(None, 1 << 19), (None, 37 * 40), (101, 64 * 40)])
def test_fast_path_equals_module_calls(monkeypatch, name, batch_size, block):
    """The blocked forward draws every chunk's masks as the module calls would (same generator
    calls in the same order, same droplab seeds and step counters), so the samples agree up to
    the rounding of matrix products of other shapes, and the global RNG ends in the same state.
    Small blocks put block edges inside passes and chunks."""
    monkeypatch.setattr(mc_sampling, "BLOCK_ELEMENTS", block)
    net, x = _fast_nets()[name], torch.randn(13, 6)
    prefix, rest = mc_sampling._deterministic_prefix(net)
    h = prefix(x) if prefix is not None else x
    assert mc_fast.plan(rest, h, [13 * 30]) is not None, "the fast path applies"
    for seed in (7, None):
        torch.manual_seed(1)
        fast = mc_predict(net, x, 30, seed=seed, batch_size=batch_size, keep_samples=True)
        fast_state = torch.get_rng_state()
        torch.manual_seed(1)
        ref = _module_path(
            monkeypatch, net, x, 30, seed=seed, batch_size=batch_size, keep_samples=True
        )
        assert torch.equal(torch.get_rng_state(), fast_state)
        torch.testing.assert_close(fast.samples, ref.samples, rtol=0, atol=1e-6)
        for k in ("mean", "variance", "entropy", "mutual_info"):
            torch.testing.assert_close(getattr(fast, k), getattr(ref, k), rtol=0, atol=1e-6)
    assert all(m.step == 0 for m in net.modules() if isinstance(m, droplab.Dropout))


def test_fast_path_regression(monkeypatch):
    net = _fast_nets()["torch-2-dropouts"]
    x = torch.randn(9, 6)
    fast = mc_predict(net, x, 20, seed=2, task="regress", tau=2.0, keep_samples=True)
    ref = _module_path(monkeypatch, net, x, 20, seed=2, task="regress", tau=2.0, keep_samples=True)
    torch.testing.assert_close(fast.samples, ref.samples, rtol=0, atol=1e-6)
    torch.testing.assert_close(fast.variance, ref.variance, rtol=0, atol=1e-6)


def test_fast_path_covers_the_benchmark_mlps():
    from droplab.models import mlp as fashion_mlp

    net = fashion_mlp((256, 256), (0.5, 0.5))
    tnet = nn.Sequential(*[nn.Dropout(m.p) if isinstance(m, droplab.Dropout) else m for m in net])
    h = torch.rand(4, 256)
    with mc_dropout(net), mc_dropout(tnet):
        assert mc_fast.plan(mc_sampling._deterministic_prefix(net)[1], h, [200]) is not None
        assert mc_fast.plan(mc_sampling._deterministic_prefix(tnet)[1], h, [200]) is not None
    assert mc_fast.torch_dropout_reproduced() in (True, False)


def test_fast_path_left_to_the_modules():
    torch.manual_seed(0)
    h = torch.randn(4, 8)
    calls = []
    hooked = nn.Sequential(nn.Dropout(0.5), nn.Linear(8, 3))
    hooked[1].register_forward_hook(lambda m, i, o: calls.append(o.shape[0]))
    with mc_dropout(hooked):
        assert mc_fast.plan(hooked, h, [40]) is None  # hooks must run
        assert mc_fast.plan(nn.Sequential(nn.Linear(8, 3)), h, [40]) is None  # no dropout
        assert mc_fast.plan(nn.Sequential(nn.Dropout(0.0), nn.Linear(8, 3)), h, [40]) is None
        assert (
            mc_fast.plan(nn.Sequential(nn.Dropout(0.5), nn.Linear(8, 3)), h.double(), [40]) is None
        )
    mc_predict(nn.Sequential(nn.Linear(8, 8), hooked), torch.randn(5, 8), 4, batch_size=7)
    assert sum(calls) == 20


def test_torch_dropout_noise_is_torch_dropout():
    if not mc_fast.torch_dropout_reproduced():
        pytest.skip("this CPU's torch draws Bernoulli masks in parallel chunks (MKL)")
    x = torch.randn(50, 33)
    with torch.random.fork_rng():
        torch.manual_seed(5)
        ref = nn.functional.dropout(x, 0.6)
        noise = torch.empty(x.numel())
        torch.manual_seed(5)
        mc_fast.torch_dropout_noise(noise, 0.4, torch.ones(()).div_(0.4), piece=77)
    assert torch.equal(x * noise.view_as(x), ref)


def test_pieces_fill_and_accumulate_match_indexing():
    g = torch.Generator().manual_seed(0)
    for n, start, length in [(1, 0, 7), (5, 0, 5), (5, 3, 1), (5, 3, 14), (7, 12, 30), (4, 8, 8)]:
        h = torch.randn(n, 3, generator=g)
        idx = torch.arange(start, start + length) % n
        dst = mc_summary.fill_rows(torch.empty(length, 3), h, start, n)
        assert torch.equal(dst, h[idx])
        q = torch.randn(2, length, 3, generator=g)
        acc = torch.zeros(2, n, 3, dtype=torch.float64)
        mc_summary.accumulate(acc, q, start, n)
        ref = torch.zeros(2, n, 3, dtype=torch.float64).index_add_(1, idx, q.double())
        torch.testing.assert_close(acc, ref)


def test_entropy_with_minus_infinite_logits():
    """A class ruled out by a -inf logit contributes 0 log 0 = 0, not 0 * -inf = nan."""

    class Masked(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 3))

        def forward(self, x):
            z = self.net(x)
            return torch.cat([z, torch.full_like(z[:, :1], -math.inf)], 1)

    out = mc_predict(Masked(), torch.randn(6, 4), 10, seed=0, keep_samples=True)
    p = out.samples.double()
    assert torch.isfinite(out.entropy).all() and (out.mean[:, 3] == 0).all()
    H = -torch.special.xlogy(p.mean(0), p.mean(0)).sum(1)
    EH = -torch.special.xlogy(p, p).sum(2).mean(0)
    torch.testing.assert_close(out.entropy.double(), H, rtol=0, atol=1e-5)
    torch.testing.assert_close(out.mutual_info.double(), (H - EH).clamp(min=0), rtol=0, atol=1e-5)
