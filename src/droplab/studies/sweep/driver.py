"""The sweep driver: runs the trials that still need running on an executor, recording each in
the store.

Faults it bounds: a trial over the time limit is stopped and recorded as failed; a worker that
dies fails only its own trial; Ctrl-C or SIGTERM stops every worker at once (a stopped one too)
and puts the trials in flight back to ``pending``; an error of the store (a full disk) stops
the workers before it propagates. What happens is told to ``events`` (the command line shows it);
the driver itself prints nothing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

# -- the driver --------------------------------------------------------------------------------


@dataclass
class Outcome:
    """What a run of the driver did. ``interrupted`` is the Ctrl-C (``KeyboardInterrupt``) or
    SIGTERM that stopped it, for the caller to re-raise once it has said so."""

    ran: int = 0
    done: int = 0
    failed: int = 0
    timed_out: int = 0
    interrupted: BaseException | None = None


class Events:
    """What the driver tells as it goes; this one tells nobody (the command line's shows it)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass

    def done(self, tid: str, result: dict) -> None:
        """Trial ``tid`` finished: ``result`` as :func:`executors.run_trial` returns it."""

    def failed(self, tid: str, reason: str) -> None:
        """Trial ``tid`` failed: the last line of its error."""

    def status(self, running: int, failed: int) -> None:
        """Trials running now, trials failed so far."""


def drive(
    store,
    trials,
    executor,
    *,
    threads: int,
    retry_failed: bool = False,
    trial_timeout: float | None = None,
    events: Events | None = None,
) -> Outcome:
    """Run the trials of ``trials`` that still need running, recording each in ``store``.

    Only this function writes to the store while a sweep runs. ``trial_timeout`` (seconds,
    counted from the hand-over to a worker) stops a trial that runs longer and records it as
    failed. On Ctrl-C (or SIGTERM) it stops every worker now, puts the trials in flight back to
    ``pending`` and returns with ``interrupted`` set.
    """
    events = events or Events()
    configs = dict(trials)
    wanted = ("pending", "failed") if retry_failed else ("pending",)
    statuses = store.statuses(configs)
    queue = [tid for tid, _ in trials if statuses[tid] in wanted]
    failed_before = 0 if retry_failed else sum(s == "failed" for s in statuses.values())
    outcome = Outcome()
    in_flight: dict[str, float] = {}  # trial id -> when it was handed to a worker (monotonic)
    try:
        with events:
            while queue or in_flight:
                while queue and len(in_flight) < executor.capacity:
                    tid = queue.pop(0)
                    store.mark_running(tid, threads=threads)
                    in_flight[tid] = time.monotonic()
                    executor.submit(tid, configs[tid])
                finished = executor.wait(timeout=_until_next_deadline(in_flight, trial_timeout))
                for tid, _ in finished:
                    del in_flight[tid]
                finished += _stop_late_trials(executor, in_flight, trial_timeout)
                for tid, result in finished:
                    in_flight.pop(tid, None)
                    _record(store, tid, result, outcome, events)
                events.status(len(in_flight), failed_before + outcome.failed)
    except KeyboardInterrupt as e:  # SIGTERM arrives as one too (droplab.__main__)
        outcome.interrupted = e
        stopped = executor.abort()
        store.mark_pending(set(stopped) | set(in_flight))
    except BaseException:  # a store error (disk full): stop the workers, then say it
        executor.abort()
        raise
    return outcome


class TrialTimeout(Exception):
    """A trial ran past the sweep's time limit and was stopped."""


def _until_next_deadline(in_flight: dict, limit: float | None) -> float:
    if not limit or not in_flight:
        return 0.5
    left = min(in_flight.values()) + limit - time.monotonic()
    return min(0.5, max(0.0, left))


def _stop_late_trials(executor, in_flight: dict, limit: float | None) -> list:
    if not limit:
        return []
    now = time.monotonic()
    late = [tid for tid, started in in_flight.items() if now - started > limit]
    for tid in late:
        executor.cancel(tid)
    why = f"timed out: stopped after {limit:g} s (the sweep's --trial-timeout)"
    return [(tid, TrialTimeout(why)) for tid in late]


def _record(store, tid: str, result, outcome: Outcome, events: Events) -> None:
    from droplab.studies.sweep.executors import WorkerDied

    outcome.ran += 1
    if isinstance(result, (WorkerDied, TrialTimeout)):
        store.mark_failed(tid, str(result))
        outcome.failed += 1
        outcome.timed_out += isinstance(result, TrialTimeout)
        events.failed(tid, str(result))
    elif "error" in result:
        store.mark_failed(tid, result["error"], host=result.get("host"), pid=result.get("pid"))
        outcome.failed += 1
        events.failed(tid, result["error"].strip().splitlines()[-1])
    else:
        store.mark_done(tid, result)
        outcome.done += 1
        events.done(tid, result)
