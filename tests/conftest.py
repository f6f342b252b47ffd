"""Shared fixtures: the real Fashion-MNIST (skipped with a reason where absent) and a tiny,
learnable synthetic stand-in with the same layout, for tests that must take seconds."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch


@pytest.fixture(scope="session")
def fashion_mnist():
    """``(train, test)`` of the real data, never downloaded; skips where it is not installed."""
    from droplab.data import DataError, load_fashion_mnist

    try:
        return load_fashion_mnist(download=False)
    except DataError as e:
        pytest.skip(f"Fashion-MNIST is not installed here ({str(e)[:120]}...)")


def make_tiny(n_train: int = 512, n_test: int = 256, *, seed: int = 0, noise: float = 0.35):
    """Ten noisy prototypes in [0, 1]^784: an MLP learns it in an epoch, as on the real data."""
    g = torch.Generator().manual_seed(seed)
    prototypes = torch.rand(10, 784, generator=g)

    def split(n: int):
        labels = torch.randint(0, 10, (n,), generator=g)
        images = prototypes[labels] + noise * torch.randn(n, 784, generator=g)
        return SimpleNamespace(images=images.clamp_(0, 1), labels=labels)

    return split(n_train), split(n_test)


@pytest.fixture(scope="session")
def tiny_data():
    """``(train, test)``: 512 and 256 synthetic 784-pixel images of 10 classes."""
    return make_tiny()


def sigint_default() -> None:
    """``preexec_fn`` for a child that a test interrupts with SIGINT: Ctrl-C as a terminal delivers
    it. A shell that runs the suite in the background (``cmd &``) leaves SIGINT ignored in its
    children, and Python then installs no KeyboardInterrupt handler at all."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)
