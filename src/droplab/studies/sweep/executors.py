"""Where sweep trials run: worker processes of our own, or Ray tasks (here or on a cluster).

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
  submitted is a trial running, and a dying worker takes only its own trial with it);
- ``submit(tid, config)``; ``wait(timeout) -> [(tid, outcome)]`` where ``outcome`` is the dict
  of :func:`run_trial` or a :class:`WorkerDied`; ``cancel(tid)`` (stop one trial now: the
  driver's per-trial time limit); ``abort()`` (stop everything in flight, now, and return the
  ids); ``close()``. Each returns in bounded time, whatever state the workers are in.
"""

from __future__ import annotations

import importlib
import os
import shutil
import socket
import tempfile
import time
import traceback

from droplab._threads import set_threads
from droplab.errors import DroplabError

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
    """A worker process starts here: Ctrl-C is the driver's business, threads are fixed, and the
    worker ends with the driver.

    A worker busy with a trial does not read its pipe, so it would not see the driver go: without
    the watch below, a driver killed by SIGKILL would leave its workers running their trials.
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


def worker_loop(conn, threads: int | None) -> None:
    """A local worker: run the trials that come down ``conn`` one at a time, sending back each
    result, until ``None`` or the driver's end closes."""
    worker_init(threads)
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return
        if job is None:
            return
        trainer, config = job
        conn.send(run_trial(trainer, config, threads))


# -- the executors (driver side) ---------------------------------------------------------------


def default_workers() -> int:
    """Cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class LocalExecutor:
    """``workers`` processes of our own, one trial at a time each (``forkserver`` start where
    there is one, else ``spawn``: never ``fork``, which copies the driver's threads and locks).

    Not a ``ProcessPoolExecutor``: when one of its workers dies, that pool breaks and fails every
    trial in flight. Here each trial is bound to the process running it, so a worker that dies
    (or is stopped by :meth:`cancel`) fails only its own trial, a fresh process takes its place
    at the next ``submit``, and the other workers go on. Stopping uses SIGKILL, which also ends
    a stopped (SIGSTOP) process.
    """

    def __init__(self, trainer: str, *, workers: int, threads: int):
        self.trainer, self.capacity, self.threads = trainer, workers, threads
        self._context = _start_context()
        self._idle: list[_Worker] = []
        self._busy: dict[str, _Worker] = {}  # trial id -> the worker running it

    def submit(self, tid: str, config: dict) -> None:
        while self._idle:
            worker = self._idle.pop()
            try:
                worker.conn.send((self.trainer, config))
                break
            except OSError:  # it died while idle
                worker.kill()
        else:
            worker = _Worker(self._context, self.threads)
            worker.conn.send((self.trainer, config))
        self._busy[tid] = worker

    def wait(self, timeout: float) -> list[tuple[str, dict | WorkerDied]]:
        from multiprocessing.connection import wait as wait_handles

        if not self._busy:
            return []
        owner = {}
        for tid, worker in self._busy.items():
            owner[worker.conn] = owner[worker.process.sentinel] = tid
        ready = wait_handles(list(owner), timeout=timeout)
        out = []
        for tid in dict.fromkeys(owner[h] for h in ready):
            worker = self._busy.pop(tid)
            result = worker.result()
            if result is None:
                out.append((tid, WorkerDied(worker.death())))
                worker.kill()
            else:
                out.append((tid, result))
                self._idle.append(worker)
        return out

    def cancel(self, tid: str) -> None:
        """Stop the trial ``tid`` now (its worker is killed; the next submit starts another)."""
        worker = self._busy.pop(tid, None)
        if worker is not None:
            worker.kill()

    def abort(self) -> list[str]:
        """Stop every trial in flight now; returns their ids."""
        ids = list(self._busy)
        for tid in ids:
            self.cancel(tid)
        return ids

    def close(self) -> None:
        """Stop the workers: idle ones are asked to exit, any that do not within a second
        (stopped, or still running a trial) are killed."""
        self.abort()
        idle, self._idle = self._idle, []
        for worker in idle:
            try:
                worker.conn.send(None)
            except OSError:
                pass
        deadline = time.monotonic() + 1.0
        for worker in idle:
            worker.process.join(max(0.0, deadline - time.monotonic()))
            worker.kill()

    def describe(self) -> str:
        return f"local processes, {self.capacity} workers x {self.threads} threads"


def _start_context():
    import multiprocessing as mp

    if "forkserver" in mp.get_all_start_methods():
        context = mp.get_context("forkserver")
        # import torch once, in the (single-threaded) server, not in every worker
        context.set_forkserver_preload(["torch", __name__])
        return context
    return mp.get_context("spawn")


class _Worker:
    """One worker process and the driver's end of its pipe."""

    def __init__(self, context, threads: int):
        here, there = context.Pipe()
        self.process = context.Process(
            target=worker_loop, args=(there, threads), name="droplab-sweep-worker"
        )
        self.process.start()
        there.close()
        self.conn = here

    def result(self) -> dict | None:
        """The finished trial's result, or None when the process died instead."""
        try:
            return self.conn.recv() if self.conn.poll() else None
        except (EOFError, OSError):
            return None

    def death(self) -> str:
        import signal

        self.process.join(5)
        code = self.process.exitcode
        if code is not None and code < 0:
            how = f"killed by {signal.Signals(-code).name}"
        else:
            how = f"exit code {code}"
        return f"worker process died while running it (pid {self.process.pid}, {how})"

    def kill(self) -> None:
        import signal

        if self.process.exitcode is None:
            try:
                os.kill(self.process.pid, signal.SIGKILL)  # ends a stopped process too
            except ProcessLookupError:
                pass
            self.process.join(5)
        self.conn.close()


class RayExecutor:
    """Ray tasks, ``num_cpus=threads`` each.

    ``address=None`` starts a private Ray on this machine, ``workers * threads`` CPUs, that ends
    with the sweep: a new cluster of its own (``ray.init(address="local")``, never one already
    running, whatever ``RAY_ADDRESS`` says), in a temporary folder of its own, every process bound
    to the loopback address, no dashboard. ``"auto"`` or ``"HOST:PORT"`` joins a running cluster
    (``workers`` then defaults to its CPUs // threads); a HOST:PORT where nothing answers within
    ``CONNECT_TIMEOUT`` seconds is a one-line error naming it, not minutes of retries.
    """

    CONNECT_TIMEOUT = 10.0

    def __init__(self, trainer: str, *, workers: int | None, threads: int, address: str | None):
        ray = _import_ray()
        self.ray, self.trainer, self.threads = ray, trainer, threads
        self._owns = not ray.is_initialized()
        self._temp_dir = None
        if self._owns:
            with _signal_handlers_kept():  # ray.init installs its own SIGTERM handler
                if address is None:
                    self._temp_dir = tempfile.mkdtemp(prefix="droplab-ray-")
                    _start_private_ray(
                        ray, (workers or default_workers()) * threads, self._temp_dir
                    )
                else:
                    _join_ray(ray, address, self.CONNECT_TIMEOUT)
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

    def cancel(self, tid: str) -> None:
        """Stop the trial ``tid`` now (``force=True`` kills the worker process running it)."""
        for ref, owner in list(self._refs.items()):
            if owner == tid:
                del self._refs[ref]
                try:
                    self.ray.cancel(ref, force=True)
                except Exception:  # already finished, or its node is gone
                    pass

    def abort(self) -> list[str]:
        ids = list(self._refs.values())
        for tid in ids:
            self.cancel(tid)
        return ids

    def close(self) -> None:
        self.abort()
        if self._owns and self.ray.is_initialized():
            self.ray.shutdown()
        if self._temp_dir is not None:
            shutil.rmtree(self._temp_dir, ignore_errors=True)

    def describe(self) -> str:
        return (
            f"Ray, {self.capacity} trials in flight x {self.threads} threads "
            f"({self.cluster_cpus} CPUs in the cluster)"
        )


def _import_ray():
    try:
        import ray
    except ImportError:
        raise DroplabError(
            "--executor ray needs Ray: pip install 'droplab[ray]' (on every node)"
        ) from None
    return ray


_RAY_QUIET = dict(include_dashboard=False, log_to_driver=False, configure_logging=False)


def _start_private_ray(ray, cpus: int, temp_dir: str) -> None:
    """A new Ray cluster on this machine, bound to 127.0.0.1 only.

    Ray binds its servers to the node's address; it takes the loopback one only where it does
    not expect to form clusters (its switch ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER``, read when
    ``ray`` is imported into ``ray_constants.ENABLE_RAY_CLUSTER``), so both are turned off while
    it starts; the processes it starts keep the variable. tests/test_faults_sweep.py checks the
    listening sockets.
    """
    from ray._private import ray_constants

    variable, flag = ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR, ray_constants.ENABLE_RAY_CLUSTER
    before = os.environ.get(variable)
    os.environ[variable], ray_constants.ENABLE_RAY_CLUSTER = "0", False
    try:
        ray.init(address="local", num_cpus=cpus, _temp_dir=temp_dir, **_RAY_QUIET)
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = flag
        if before is None:
            os.environ.pop(variable, None)
        else:
            os.environ[variable] = before


def _join_ray(ray, address: str, timeout: float) -> None:
    """Join the cluster at ``address`` ("auto" or HOST:PORT), or fail in one line naming it."""
    if address != "auto":
        host, sep, port = address.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise DroplabError(f"--address {address}: expected auto or HOST:PORT")
        try:  # Ray itself retries an unreachable address for minutes
            socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
        except OSError as e:
            reason = e.strerror or type(e).__name__.replace("Error", " error").lower()
            raise DroplabError(
                f"--address {address}: no Ray cluster answers there ({reason}, waited at most "
                f"{timeout:g} s); start one with `ray start --head` or leave --address out"
            ) from None
    try:
        ray.init(address=address, **_RAY_QUIET)
    except Exception as e:  # ConnectionError, RuntimeError, ValueError from Ray
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise DroplabError(f"--address {address}: cannot join the Ray cluster: {first}") from None


class _signal_handlers_kept:
    """Restores SIGINT and SIGTERM's handlers on exit (droplab's: Ctrl-C's path, exit 130/143)."""

    def __enter__(self):
        import signal
        import threading

        self._saved = {}
        if threading.current_thread() is threading.main_thread():
            self._saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

    def __exit__(self, *exc):
        import signal

        for sig, handler in self._saved.items():
            if handler is not None:
                signal.signal(sig, handler)
