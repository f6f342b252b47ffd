"""droplab sweep --executor ray: on a private local Ray (``ray.init(num_cpus=2)``), the same
trials give the same numbers as on the local process pool (same seeds, same thread count)."""

from __future__ import annotations

import pytest

from droplab.__main__ import main
from droplab.studies.sweep.store import Store

pytestmark = pytest.mark.slow  # Ray takes ~10 s to start


def _metrics(out):
    with Store(out / "sweep.db") as store:
        trials = store.trials()
    assert all(t.status == "done" for t in trials), [t.error for t in trials]
    # wall times differ; everything else must not
    return {
        t.id: [{k: v for k, v in e.items() if k != "seconds"} for e in t.epochs] for t in trials
    }


def test_ray_gives_the_local_executors_numbers(tmp_path):
    pytest.importorskip("ray")
    pytest.importorskip("droplab.train")
    try:
        from droplab.data import load_fashion_mnist

        load_fashion_mnist(download=False)
    except Exception as e:  # noqa: BLE001
        pytest.skip(f"no Fashion-MNIST: {e}")
    grid = [
        "--grid",
        "dropout=0,0.5",
        "--seeds",
        "2",
        "--set",
        "subset=256",
        "--set",
        "epochs=2",
        "--set",
        "hidden=32:32",
        "--threads",
        "1",
        "--workers",
        "2",
        "--no-report",
    ]
    assert main(["sweep", "--out", str(tmp_path / "local"), *grid]) == 0
    assert main(["sweep", "--out", str(tmp_path / "ray"), "--executor", "ray", *grid]) == 0
    local, ray = _metrics(tmp_path / "local"), _metrics(tmp_path / "ray")
    assert len(local) == 4
    assert local == ray
    with Store(tmp_path / "ray" / "sweep.db") as store:
        assert all(t.threads == 1 and t.attempts == 1 for t in store.trials())
