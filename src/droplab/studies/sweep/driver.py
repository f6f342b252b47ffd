"""The sweep driver: runs the trials that still need running on an executor, recording each in
the store; Ctrl-C or SIGTERM puts the trials in flight back to ``pending``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from droplab.studies.sweep.plan import describe

# -- the driver --------------------------------------------------------------------------------


@dataclass
class Outcome:
    """What a run of the driver did."""

    ran: int = 0
    done: int = 0
    failed: int = 0
    interrupted: bool = False


def drive(store, trials, executor, *, threads: int, retry_failed: bool, keys, console) -> Outcome:
    """Run the trials of ``trials`` that still need running, recording each in ``store``.

    Only this function writes to the store while a sweep runs. On Ctrl-C (or SIGTERM) it stops
    submitting, puts the trials in flight back to ``pending`` and returns ``interrupted``.
    """
    from droplab.studies.sweep.executors import WorkerDied

    configs = dict(trials)
    statuses = store.statuses(configs)
    wanted = ("pending", "failed") if retry_failed else ("pending",)
    queue = [tid for tid, _ in trials if statuses[tid] in wanted]
    outcome = Outcome()
    total = len(trials)
    already = sum(1 for s in statuses.values() if s == "done")
    failed_before = sum(1 for s in statuses.values() if s == "failed") if not retry_failed else 0
    in_flight: dict[str, float] = {}

    progress, task = _progress(console, total, already)
    position = 0
    try:
        with progress:
            while position < len(queue) or in_flight:
                while position < len(queue) and len(in_flight) < executor.capacity:
                    tid = queue[position]
                    position += 1
                    store.mark_running(tid, threads=threads)
                    in_flight[tid] = time.time()
                    executor.submit(tid, configs[tid])
                for tid, result in executor.wait(timeout=0.5):
                    in_flight.pop(tid, None)
                    outcome.ran += 1
                    label = describe(configs[tid], keys)
                    if isinstance(result, WorkerDied):
                        store.mark_failed(tid, str(result))
                        outcome.failed += 1
                        progress.console.print(f"[red]FAILED[/] {label}: {result}")
                    elif "error" in result:
                        store.mark_failed(
                            tid, result["error"], host=result.get("host"), pid=result.get("pid")
                        )
                        outcome.failed += 1
                        last = result["error"].strip().splitlines()[-1]
                        progress.console.print(f"[red]FAILED[/] {label}: {last}")
                    else:
                        store.mark_done(tid, result)
                        outcome.done += 1
                        last = result["epochs"][-1] if result["epochs"] else {}
                        progress.console.print(
                            f"done {label}  test_acc {last.get('test_acc', float('nan')):.4f}"
                            f"  train_acc {last.get('train_acc', float('nan')):.4f}"
                            f"  ({result.get('seconds') or 0:.1f} s, {result.get('host')})"
                        )
                    progress.advance(task)
                progress.update(
                    task,
                    running=len(in_flight),
                    failed=failed_before + outcome.failed,
                )
    except KeyboardInterrupt:
        outcome.interrupted = True
        stopped = executor.abort()
        store.mark_pending(set(stopped) | set(in_flight))
    return outcome


def _progress(console, total: int, already: int):
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    progress = Progress(
        TextColumn("trials"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("running {task.fields[running]}  [red]failed {task.fields[failed]}[/]"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
    )
    task = progress.add_task("sweep", total=total, completed=already, running=0, failed=0)
    return progress, task
