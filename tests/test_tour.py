"""`droplab tour`: every section passes, the summary and exit status, the plots, and oracles that
fail when the engine under them is broken (a wrong optimizer rule, a wrong loss, a wrong scale)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from droplab.__main__ import main
from droplab.tour.sections import SECTIONS, find_section
from droplab.tour.sections._common import Checks


def tour(capsys, *args) -> tuple[int, str]:
    status = main(["tour", *args])
    out = capsys.readouterr()
    return status, out.out + out.err


def test_every_section_passes(capsys):
    status, out = tour(capsys)
    assert status == 0, out
    assert "FAIL" not in out
    assert f"of {len(SECTIONS)} section(s)" in out
    for section in SECTIONS:
        assert section.key in out  # a row of the summary table each


def test_sections_by_number_and_name(capsys):
    status, out = tour(capsys, "3", "losses")
    assert status == 0, out
    assert "d2l-dropout" in out and "losses:" in out
    assert "optimizers" not in out
    assert find_section("6") is find_section("optimizers")


def test_unknown_section_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["tour", "10"])
    assert exc.value.code == 2
    assert "unknown section '10'" in capsys.readouterr().err


def test_plots_are_written(capsys, tmp_path):
    status, out = tour(capsys, "6", "7", "--plots", str(tmp_path / "plots"))
    assert status == 0, out
    for name in ("optimizers.png", "lr_schedules.png"):
        data = (tmp_path / "plots" / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000, name


def _adam_with_swapped_betas(monkeypatch):
    from droplab.scratch import optim

    update = optim.Adam._update

    def wrong(self, p, grad, state, group):
        beta1, beta2 = group["betas"]
        update(self, p, grad, state, {**group, "betas": (beta2, beta1)})

    monkeypatch.setattr(optim.Adam, "_update", wrong)


def _mse_without_its_factor_2(monkeypatch):
    from droplab.scratch import losses

    def wrong(self, x, t):  # l = d^2 / 2: the gradient d is right for it, the loss is not MSE
        d = x - t
        return 0.5 * d * d, d

    monkeypatch.setattr(losses.MSELoss, "_fwd_bwd", wrong)


def _dropout_that_never_scales(monkeypatch):
    import droplab.functional

    monkeypatch.setattr(droplab.functional, "train_scale", lambda p, mode: 1.0)


def _multistep_one_epoch_late(monkeypatch):
    from droplab.scratch import lr_scheduler

    def wrong(self):
        if self.last_epoch - 1 not in self.milestones:
            return self._current()
        return [lr * self.gamma for lr in self._current()]

    monkeypatch.setattr(lr_scheduler.MultiStepLR, "get_lr", wrong)


@pytest.mark.parametrize(
    "breakage, section, failing",
    [
        (_adam_with_swapped_betas, "6", "Adam"),
        (_mse_without_its_factor_2, "4", "NumPy loss = torch loss"),
        (_mse_without_its_factor_2, "5", "NumPy loss = torch loss"),
        (_dropout_that_never_scales, "1", "check_scaling passes droplab.Dropout"),
        (_dropout_that_never_scales, "3", "droplab keeps x / (1 - p)"),
        (_multistep_one_epoch_late, "7", "MultiStepLR: NumPy engine = torch"),
    ],
    ids=[
        "adam-betas",
        "mse-loss",
        "mse-backprop",
        "dropout-scale-1",
        "dropout-scale-3",
        "multistep",
    ],  # fmt: skip
)
def test_a_broken_engine_makes_the_tour_fail(capsys, monkeypatch, breakage, section, failing):
    breakage(monkeypatch)
    status, out = tour(capsys, section)
    assert status == 1, out
    assert "FAIL" in out
    fail_lines = [line for line in out.splitlines() if line.strip().startswith("FAIL")]
    assert any(failing in line for line in fail_lines), fail_lines


def test_a_section_that_raises_is_a_fail_and_the_tour_goes_on(capsys, monkeypatch):
    from droplab.tour.sections import s03_d2l_dropout

    def boom(plots=None):
        raise RuntimeError("boom")

    monkeypatch.setattr(s03_d2l_dropout, "run", boom)
    status, out = tour(capsys, "3", "5")
    assert status == 1
    assert "the section ran to the end" in out and "RuntimeError: boom" in out
    assert "backprop" in out  # section 5 still ran and is in the table


def test_the_oracles_have_teeth():
    checks = Checks()
    one = np.float32(1)
    assert checks.agree("float32 within 1e-6", one + np.float32(5e-7), one)
    assert not checks.agree("float32 off by 1e-5", one + np.float32(1e-5), one)
    assert checks.agree("float64 within 1e-12", 1 + 5e-13, np.float64(1))
    assert not checks.agree("float64 off by 1e-11", 1 + 1e-11, np.float64(1))
    assert not checks.equal("one bit", np.float32(1), np.nextafter(one, np.float32(2)))
    assert not checks.close("shape", np.ones(3), np.ones(4), 1.0)
    assert [c.passed for c in checks] == [True, False, True, False, False, False]


def test_runs_as_python_m_droplab():
    proc = subprocess.run(
        [sys.executable, "-m", "droplab", "tour", "2"], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "PASS: all" in proc.stdout
