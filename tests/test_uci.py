"""The UCI benchmark: loader, the batched networks' gradients and optimizer, a smoke run, the CLI.

The full benchmark (5 datasets x 20 splits x 400 epochs) is ``benchmarks/uci.py``; here one
dataset runs on two splits with few epochs and passes.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from droplab.__main__ import main
from droplab._rng import threshold
from droplab.studies import uci

# Yacht and Boston with their 20 splits ship with the tests (tests/data/uci/README.md)
UCI_DIR = Path(__file__).resolve().parent / "data" / "uci"
needs_uci = pytest.mark.skipif(not (UCI_DIR / "yacht").exists(), reason=f"no UCI data in {UCI_DIR}")


def write_toy(root: Path, name="toy", n=60, d=3, splits=2) -> Path:
    """A small dataset in the authors' layout: y = x0 - 2 x1 + noise, in the last column."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, d))
    y = X[:, 0] - 2 * X[:, 1] + 0.1 * rng.normal(size=n)
    folder = root / name
    folder.mkdir(parents=True)
    np.savetxt(folder / "data.txt", np.column_stack([X, y]))
    np.savetxt(folder / "index_features.txt", np.arange(d), fmt="%d")
    (folder / "index_target.txt").write_text(f"{d}\n")
    (folder / "n_splits.txt").write_text(f"{splits}\n")
    (folder / "n_hidden.txt").write_text("50\n")
    (folder / "n_epochs.txt").write_text("40\n")
    (folder / "dropout_rates.txt").write_text("0.01\n0.05")  # no final newline, as in the repo
    (folder / "tau_values.txt").write_text("5\n10\n")
    for i in range(splits):
        perm = rng.permutation(n)
        np.savetxt(folder / f"index_train_{i}.txt", perm[:50], fmt="%d")
        np.savetxt(folder / f"index_test_{i}.txt", perm[50:], fmt="%d")
    return root


def test_loader(tmp_path):
    data = uci.load_uci("toy", write_toy(tmp_path))
    assert data.X.shape == (60, 3) and data.y.shape == (60,)
    assert len(data.splits) == 2 and data.splits[0][0].shape == (50,)
    assert data.dropout_rates == [0.01, 0.05] and data.tau_values == [5.0, 10.0]
    assert data.n_hidden == 50 and data.n_epochs == 40


def test_loader_names_what_is_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="no UCI dataset 'boston'.*bostonHousing"):
        uci.load_uci("boston", tmp_path)


@needs_uci
def test_aliases_and_reference_layout():
    data = uci.load_uci("boston", UCI_DIR)
    assert data.name == "bostonHousing" and data.X.shape == (506, 13)
    assert len(data.splits) == 20 and data.dropout_rates == [0.005, 0.01, 0.05, 0.1]


def test_grads_match_autograd():
    g = torch.Generator().manual_seed(0)
    G, b, d, H = 3, 7, 4, 5
    f64 = torch.float64
    params = [
        torch.randn(G, d, H, generator=g, dtype=f64),
        torch.randn(G, 1, H, generator=g, dtype=f64),
        torch.randn(G, H, 1, generator=g, dtype=f64),
        torch.randn(G, 1, 1, generator=g, dtype=f64),
    ]
    x = torch.randn(G, b, d, generator=g, dtype=f64)
    y = torch.randn(G, b, 1, generator=g, dtype=f64)
    kx = torch.rand(G, b, d, generator=g) > 0.2
    kh = torch.rand(G, b, H, generator=g) > 0.3
    scale = torch.tensor([1.25, 1.1, 1.0], dtype=f64)[:, None, None]
    reg = torch.tensor([0.1, 0.2, 0.3], dtype=f64)
    ours = uci._grads([q.clone() for q in params], x, y, kx, kh, scale, (2 * reg)[:, None, None])

    W1, b1, W2, b2 = (q.clone().requires_grad_() for q in params)
    h = torch.relu(torch.baddbmm(b1, x * kx * scale, W1)) * kh * scale
    out = torch.baddbmm(b2, h, W2)
    loss = ((out - y) ** 2).mean((1, 2)) + reg * (W1.pow(2).sum((1, 2)) + W2.pow(2).sum((1, 2)))
    loss.sum().backward()  # a sum over networks: each gets its own gradient
    for name, a, q in zip(("W1", "b1", "W2", "b2"), ours, (W1, b1, W2, b2)):
        torch.testing.assert_close(a, q.grad, msg=lambda m, n=name: f"{n}: {m}")


def test_int16_threshold_rate():
    g = torch.Generator().manual_seed(0)
    for p in (0.005, 0.05, 0.5):
        thr = uci.int16_threshold(p)
        assert int(thr) == threshold(p, 16) - 2**15  # the RNG specification's, on int16
        bits = torch.empty(250_000, dtype=torch.int64).random_(-(2**63), None, generator=g)
        keep = (bits.view(torch.int16) >= thr).double().mean()
        n = bits.numel() * 4
        assert abs(float(keep) - (1 - p)) < 5 * math.sqrt(p * (1 - p) / n) + 2**-16


def test_int16_threshold_ends():
    assert uci.int16_threshold(torch.tensor([0.0, 0.5])).tolist() == [-(2**15), 0]
    assert int(uci.int16_threshold(1 - 2**-18)) == 2**15 - 1  # fits int16: one value kept


def test_adam_is_torch_optim_on_the_gradient_buffers():
    g = torch.Generator().manual_seed(0)
    params = [torch.randn(3, 4, 5, generator=g), torch.randn(3, 1, 5, generator=g)]
    ours = [q.clone() for q in params]
    buffers = [torch.empty_like(q) for q in params]
    adam = uci.adam_optimizer(ours, buffers)
    theirs = [q.clone().requires_grad_() for q in params]
    opt = torch.optim.Adam(theirs, lr=uci.LR, eps=1e-7)
    for _ in range(10):
        grads = [torch.randn(q.shape, generator=g) for q in params]
        for buf, gr in zip(buffers, grads):
            buf.copy_(gr)  # as _grads writes them, in place
        adam.step()
        for q, gr in zip(theirs, grads):
            q.grad = gr
        opt.step()
    for a, q in zip(ours, theirs):
        torch.testing.assert_close(a, q.detach(), rtol=0, atol=0)


def test_training_fits_a_toy_problem(tmp_path):
    data = uci.load_uci("toy", write_toy(tmp_path))
    tr, te = data.splits[0]
    task = uci.Task(data.X[tr], data.y[tr], data.X[te], data.y[te], 0.01, 10.0)
    (res,) = uci.train_and_evaluate([task], epochs=150, samples=300, seed=0)
    assert res["rmse"] < 0.5 and res["rmse_standard"] < 0.5  # y has std ~2.2, noise 0.1
    assert math.isfinite(res["ll"])


def test_summary_statistics():
    mean, se = uci.mean_se([1.0, 2.0, 3.0, 4.0])
    assert mean == 2.5 and se == pytest.approx(np.std([1, 2, 3, 4]) / 2)
    assert uci.within((2.95, 0.1), [2.90, 0.18], higher_is_better=False)
    assert not uci.within((3.2, 0.1), [2.90, 0.18], higher_is_better=False)
    assert uci.within((-2.30, 0.1), [-2.40, 0.04], higher_is_better=True)


@needs_uci
@pytest.mark.slow
def test_smoke_yacht_two_splits():
    s = uci.run_uci("yacht", UCI_DIR, splits=2, epochs=20, samples=200)
    assert s["dataset"] == "yacht" and s["splits"] == 2 and len(s["per_split"]) == 2
    for r in s["per_split"]:
        assert r["p"] in (0.005, 0.01, 0.05, 0.1) and r["tau"] in (0.25, 0.5, 0.75)
        assert len(r["grid"]) == 12
        assert 0 < r["rmse"] < 15 and -30 < r["ll"] < 0  # the target's std is ~15
    assert "| yacht | 2 |" in uci.format_table([s])


def test_cli_needs_data_dir(capsys):
    assert main(["mc", "--uci", "yacht"]) == 2
    assert "--data-dir /path/to/uci" in capsys.readouterr().err


def test_cli_missing_dataset(tmp_path, capsys):
    assert main(["mc", "--uci", "nosuch", "--data-dir", str(tmp_path), "--out", str(tmp_path)]) == 1
    assert "no UCI dataset 'nosuch'" in capsys.readouterr().err


def test_cli_toy_run_writes_json_and_report(tmp_path, capsys):
    root = write_toy(tmp_path / "data")
    out = tmp_path / "out"
    code = main(
        [
            "mc",
            "--uci",
            "toy",
            "--data-dir",
            str(root),
            "--splits",
            "2",
            "--uci-epochs",
            "5",
            "--test-samples",
            "50",
            "--workers",
            "1",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    data = json.loads((out / "mc.json").read_text())
    assert data["uci"]["toy"]["splits"] == 2
    html = (out / "mc.html").read_text()
    assert 'id="uci"' in html and "toy" in html
    assert "| toy | 2 |" in capsys.readouterr().out
