"""The sections of ``droplab tour``: every example of the tutorials, one module each.

Each module reads like the tutorial it checks: the tutorial's code (bugs included, where the
point is the bug), then the same computation with PyTorch and with droplab's NumPy engine
(``droplab.scratch``), then the oracles. ``run(plots=None) -> list[Check]`` prints the values
and one PASS/FAIL line per check; ``plots`` is a folder for the section's PNGs (or ``None``).

The modules live in the package so that ``droplab tour`` works from an installed droplab; the
repository's ``examples/NN_*.py`` scripts run them one at a time. This file stays light (no
torch, no NumPy): the command line reads ``SECTIONS`` to build its ``--help``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Check:
    """One oracle of a section: what was checked, whether it held, and the numbers behind it."""

    name: str
    passed: bool
    detail: str = ""


@dataclass(frozen=True)
class Section:
    number: int
    key: str  # a name for the command line: `droplab tour losses`
    module: str  # the module under droplab.tour.sections
    title: str


SECTIONS: tuple[Section, ...] = (
    Section(1, "custom-dropout", "s01_custom_dropout", "the tutorial's CustomDropout scales twice"),
    Section(2, "keep-prob", "s02_keep_prob", "keep_prob walk-through: 0.525 -> 0.15 -> 0.3"),
    Section(3, "d2l-dropout", "s03_d2l_dropout", "d2l's dropout(X, p) for p = 0, 0.5, 1"),
    Section(4, "losses", "s04_losses", "cross-entropy, BCE, L1, MSE, smooth L1"),
    Section(5, "backprop", "s05_backprop", "backprop through the 2-2-2 network"),
    Section(6, "optimizers", "s06_optimizers", "SGD momentum, Adagrad, RMSprop, Adam on w^2/2"),
    Section(7, "lr-schedules", "s07_lr_schedules", "StepLR, MultiStepLR, ExponentialLR"),
    Section(8, "nn-dropout", "s08_nn_dropout", "nn.Dropout(p=0.4) after Linear(4, 5)"),
    Section(9, "l2-vs-lr", "s09_l2_vs_lr", "L2 regularization vs a smaller learning rate"),
)


def find_section(name: str) -> Section:
    """A section by its number (``"6"``) or key (``"optimizers"``); ``KeyError`` if none."""
    for section in SECTIONS:
        if name.strip().lower() in (str(section.number), section.key):
            return section
    raise KeyError(name)
