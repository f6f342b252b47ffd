"""Fake trainers for the sweep tests: instant, deterministic, and able to fail or die on demand.

Each takes a config dict and returns ``{"epochs": [...], "seconds": s}`` like the real trainer.
Every call appends a line to the file named by the config's ``log`` key (when set), so tests
can count trainings (a config key, not an environment variable: the forkserver that starts
workers keeps the environment of the first test that used it).
"""

from __future__ import annotations

import os
import time


def fake_train(config: dict) -> dict:
    log = config.get("log")
    if log:
        with open(log, "a") as f:  # one short write per line: atomic with O_APPEND
            f.write(f"{config.get('seed')} {config.get('dropout')} {os.getpid()}\n")
    time.sleep(float(config.get("sleep", 0)))
    if config.get("fail"):
        raise ValueError(f"boom at dropout={config.get('dropout')}")
    if config.get("die"):
        os._exit(3)
    dropout = config.get("dropout", 0.0)
    p = float(dropout[0] if isinstance(dropout, list) else dropout)
    seed = int(config.get("seed", 0))
    subset = config.get("subset") or 60000
    wd = float(config.get("weight_decay", 0.0))
    n = 1000 / subset
    epochs = []
    for e in range(1, int(config.get("epochs", 2)) + 1):
        train_acc = min(1.0, 0.80 + 0.05 * e * n - 0.15 * p * p + 0.001 * seed)
        test_acc = 0.80 + 0.1 * p - 0.12 * p * p - 0.3 * wd + 0.002 * seed
        epochs.append(
            {
                "epoch": e,
                "train_loss": 1 - train_acc,
                "train_acc": train_acc,
                "test_loss": 1 - test_acc,
                "test_acc": test_acc,
                "lr": 0.5,
                "seconds": 0.01,
            }
        )
    return {"epochs": epochs, "seconds": 0.01 * len(epochs)}
