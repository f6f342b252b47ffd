"""Where sweep trials run: a local process pool, or Ray tasks (on this machine or a cluster).

Both executors run the same function, :func:`run_trial`, in a worker process. It sets the torch
thread count the driver chose (so a trial's numbers do not depend on where it ran), calls the
trainer, and returns a plain dict: the per-epoch metrics, or the error's traceback. A trial that
raises is therefore an ordinary result; only a worker that dies (a segfault, the OOM killer,
``os._exit``) surfaces as :class:`WorkerDied`.

The trainer is named by a ``"module:function"`` string so that it can be imported in any worker,
on any machine; the default, :func:`train_trial`, runs ``droplab.train.train`` on Fashion-MNIST
loaded once per worker process (kept in a module global, not reloaded per trial). Tests name a
fake trainer instead (``droplab sweep --trainer tests_module:function``).

Executor interface (what the sweep driver uses):

- ``capacity``: how many trials to keep in flight (no hidden queue behind them, so a trial
  submitted is a trial running, and a dying worker takes only in-flight trials with it);
- ``submit(tid, config)``; ``wait(timeout) -> [(tid, outcome)]`` where ``outcome`` is the dict
  of :func:`run_trial` or a :class:`WorkerDied`; ``abort()`` (drop everything in flight, now);
  ``close()``.
"""

from __future__ import annotations

import importlib
import os
import socket
import time
import traceback

from droplab._threads import set_threads

DEFAULT_TRAINER = "droplab.studies.sweep.executors:train_trial"

# per worker process: the trainer functions resolved so far, and the training data
_TRAINERS: dict = {}
_DATA = None


class WorkerDied(Exception):
    """The process running a trial ended without returning a result."""


# -- what runs in a worker ---------------------------------------------------------------------


def resolve_trainer(spec: str):
    """``"package.module:function"`` -> the function (cached per process)."""
    fn = _TRAINERS.get(spec)
    if fn is None:
        module_name, sep, attr = spec.partition(":")
        if not sep or not module_name or not attr:
            raise ValueError(f"a trainer is named as module:function, got {spec!r}")
        fn = getattr(importlib.import_module(module_name), attr)
        _TRAINERS[spec] = fn
    return fn


def worker_init(threads: int | None) -> None:
    """Process-pool initializer: Ctrl-C is the driver's business, threads are fixed, and the
    worker ends with the driver.

    A pool worker waits for work on a pipe whose write end it holds itself, so it never sees
    EOF: without the watch below, a driver killed by SIGKILL would leave its workers (and the
    forkserver) running forever.
    """
    import multiprocessing
    import signal
    import threading

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    set_threads(threads)  # droplab._threads: the one rule
    driver = multiprocessing.parent_process()
    if driver is not None:

        def exit_with_driver():
            driver.join()  # returns when the driver's end of our pipe closes
            os._exit(1)

        threading.Thread(
            target=exit_with_driver, name="droplab-exit-with-driver", daemon=True
        ).start()


def training_data():
    """Fashion-MNIST ``(train, test)``, loaded on the first call in this process only."""
    global _DATA
    if _DATA is None:
        from droplab.data import load_fashion_mnist

        _DATA = load_fashion_mnist()
    return _DATA


def train_trial(config: dict) -> dict:
    """The default trainer: ``droplab.train.train`` on the cached data, quietly.

    The per-epoch ``train_acc`` is the running accuracy during the epoch, with dropout on; for
    the torch engine the last epoch also gets ``train_acc_eval`` / ``train_loss_eval``, the final
    model's accuracy and loss on its training examples in eval mode (dropout off), which is the
    fair side of a train-test gap.
    """
    from droplab.train import TrainConfig, train

    data = training_data()
    result = train(TrainConfig.from_dict(config), data=data, progress=False, log=None)
    epochs = [dict(e) for e in result.epochs]
    if epochs and config.get("engine", "torch") == "torch":
        epochs[-1].update(_evaluate(result.model, data[0], config.get("subset")))
    return {"epochs": epochs, "seconds": result.seconds}


def _evaluate(model, split, subset) -> dict:
    import torch

    n = len(split.labels) if subset is None else min(subset, len(split.labels))
    with torch.no_grad():
        model.eval()
        logits = model(split.images[:n])
        loss = torch.nn.functional.cross_entropy(logits, split.labels[:n]).item()
        acc = (logits.argmax(1) == split.labels[:n]).float().mean().item()
    return {"train_acc_eval": acc, "train_loss_eval": loss}


def run_trial(trainer: str, config: dict, threads: int | None) -> dict:
    """Run one trial in this (worker) process; never raises for a trial's own failure.

    Returns ``{"epochs", "seconds", "host", "pid", "started", "finished", "threads"}``, with
    ``"error"`` (the traceback) instead of ``"epochs"`` when the trainer raised.
    """
    set_threads(threads)
    out = {"host": socket.gethostname(), "pid": os.getpid(), "threads": threads}
    out["started"] = time.time()
    try:
        result = resolve_trainer(trainer)({**config, "threads": threads})
        epochs = result["epochs"] if isinstance(result, dict) else result.epochs
        seconds = result.get("seconds") if isinstance(result, dict) else result.seconds
        out.update(epochs=[dict(e) for e in epochs], seconds=seconds)
    except Exception:
        out["error"] = traceback.format_exc()
    out["finished"] = time.time()
    return out


# -- the executors (driver side) ---------------------------------------------------------------


def default_workers() -> int:
    """Cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class LocalExecutor:
    """A ``ProcessPoolExecutor`` of ``workers`` processes (``forkserver`` start where there is
    one, else ``spawn``: never ``fork``, which copies the driver's threads and locks)."""

    def __init__(self, trainer: str, *, workers: int, threads: int):
        self.trainer, self.capacity, self.threads = trainer, workers, threads
        self._futures: dict = {}  # future -> trial id
        self._pool = None
        self._start()

    def _start(self) -> None:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        if "forkserver" in mp.get_all_start_methods():
            context = mp.get_context("forkserver")
            # import torch once, in the (single-threaded) server, not in every worker
            context.set_forkserver_preload(["torch", __name__])
        else:
            context = mp.get_context("spawn")
        self._pool = ProcessPoolExecutor(
            max_workers=self.capacity,
            mp_context=context,
            initializer=worker_init,
            initargs=(self.threads,),
        )

    def submit(self, tid: str, config: dict) -> None:
        from concurrent.futures.process import BrokenProcessPool

        try:
            future = self._pool.submit(run_trial, self.trainer, config, self.threads)
        except BrokenProcessPool:  # broke since the last wait: start afresh
            self._restart()
            future = self._pool.submit(run_trial, self.trainer, config, self.threads)
        self._futures[future] = tid

    def wait(self, timeout: float) -> list[tuple[str, dict | WorkerDied]]:
        from concurrent.futures import FIRST_COMPLETED
        from concurrent.futures import wait as wait_futures
        from concurrent.futures.process import BrokenProcessPool

        if not self._futures:
            return []
        done, _ = wait_futures(list(self._futures), timeout=timeout, return_when=FIRST_COMPLETED)
        out, broken = [], False
        for future in done:
            tid = self._futures.pop(future)
            try:
                out.append((tid, future.result()))
            except BrokenProcessPool as e:
                broken = True
                out.append((tid, WorkerDied(f"a worker process died while running it ({e})")))
        if broken:
            self._restart()
        return out

    def _restart(self) -> None:
        self._kill()
        self._start()

    def _kill(self) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        # shutdown() would wait for running trials to finish; stop them instead
        for process in list(getattr(pool, "_processes", {}).values()):
            if process.is_alive():
                process.terminate()
        pool.shutdown(wait=True, cancel_futures=True)

    def abort(self) -> list[str]:
        """Stop every trial in flight now; returns their ids."""
        ids = list(self._futures.values())
        self._futures.clear()
        self._kill()
        return ids

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def describe(self) -> str:
        return f"local process pool, {self.capacity} workers x {self.threads} threads"


class RayExecutor:
    """Ray tasks, ``num_cpus=threads`` each. ``address=None`` starts a private local Ray with
    ``workers * threads`` CPUs; ``"auto"`` or ``"HOST:PORT"`` joins a running cluster, where
    ``workers`` defaults to the cluster's CPUs // threads."""

    def __init__(self, trainer: str, *, workers: int | None, threads: int, address: str | None):
        try:
            import ray
        except ImportError:
            from droplab.errors import DroplabError

            raise DroplabError(
                "--executor ray needs Ray: pip install 'droplab[ray]' (on every node)"
            ) from None
        self.ray, self.trainer, self.threads = ray, trainer, threads
        self._owns = not ray.is_initialized()
        if self._owns:
            kwargs = dict(include_dashboard=False, log_to_driver=False, configure_logging=False)
            if address is None:
                ray.init(num_cpus=(workers or default_workers()) * threads, **kwargs)
            else:
                ray.init(address=address, **kwargs)
        cpus = int(ray.cluster_resources().get("CPU", 1))
        self.capacity = workers or max(1, cpus // threads)
        # max_retries=0: a worker that dies fails its trial, as with the local pool
        self._remote = ray.remote(num_cpus=threads, max_retries=0)(run_trial)
        self._refs: dict = {}  # ObjectRef -> trial id
        self.cluster_cpus = cpus

    def submit(self, tid: str, config: dict) -> None:
        ref = self._remote.remote(self.trainer, config, self.threads)
        self._refs[ref] = tid

    def wait(self, timeout: float) -> list[tuple[str, dict | WorkerDied]]:
        if not self._refs:
            return []
        ready, _ = self.ray.wait(list(self._refs), num_returns=1, timeout=timeout)
        out = []
        for ref in ready:
            tid = self._refs.pop(ref)
            try:
                out.append((tid, self.ray.get(ref)))
            except Exception as e:  # the worker or its node died (run_trial itself never raises)
                out.append((tid, WorkerDied(f"{type(e).__name__}: {e}")))
        return out

    def abort(self) -> list[str]:
        ids = list(self._refs.values())
        for ref in self._refs:
            try:
                self.ray.cancel(ref, force=True)
            except Exception:  # already finished, or its node is gone
                pass
        self._refs.clear()
        return ids

    def close(self) -> None:
        if self._owns and self.ray.is_initialized():
            self.ray.shutdown()

    def describe(self) -> str:
        return (
            f"Ray, {self.capacity} trials in flight x {self.threads} threads "
            f"({self.cluster_cpus} CPUs in the cluster)"
        )
