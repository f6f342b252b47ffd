"""The result store of a sweep: one SQLite file, ``DIR/sweep.db``, one row per trial.

A trial's ``id`` is a hash of its config, so planning the same sweep twice finds the same rows.
Only the sweep driver writes, each change in its own transaction; the database runs in WAL mode,
so a reader (``droplab report`` while a sweep runs) never blocks the driver, and a driver killed at
any instant leaves the file consistent: at worst some rows say ``running``, and the next driver
puts them back to ``pending`` (:meth:`Store.reset_running`).

Every ``sqlite3`` error, and a row that does not decode, surfaces as a :class:`StoreError` naming
the file (a full disk, a damaged or foreign ``sweep.db``), never as an ``sqlite3`` traceback; the
file is opened with SQLite's ``quick_check`` so that damage is found before anything runs.

Status of a trial: ``pending`` -> ``running`` -> ``done`` | ``failed``; ``failed`` -> ``running``
again only when the user asks (``--retry-failed``). ``attempts`` counts the starts.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from collections.abc import Iterable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from droplab.errors import DroplabError

SCHEMA_VERSION = 1
STATUSES = ("pending", "running", "done", "failed")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS trials (
    id          TEXT PRIMARY KEY,           -- trial_id(config)
    config      TEXT NOT NULL,              -- the full config, JSON
    status      TEXT NOT NULL DEFAULT 'pending'
                CHECK (status IN ('pending', 'running', 'done', 'failed')),
    attempts    INTEGER NOT NULL DEFAULT 0,
    epochs      TEXT,                       -- JSON list of per-epoch metrics
    train_loss  REAL,                       -- final epoch, for queries
    train_acc   REAL,                       -- train_acc_eval (dropout off) when reported
    test_loss   REAL,
    test_acc    REAL,
    gap         REAL,                       -- train_acc - test_acc (final epoch)
    seconds     REAL,                       -- training time reported by the trainer
    threads     INTEGER,                    -- torch threads the trial ran with
    created     REAL NOT NULL,              -- Unix times
    started     REAL,
    finished    REAL,
    host        TEXT,
    pid         INTEGER,
    error       TEXT                        -- the traceback of the last failure
);
CREATE INDEX IF NOT EXISTS trials_status ON trials (status);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


def canonical_json(config: dict) -> str:
    """The config as JSON with sorted keys and no spaces (tuples become lists)."""
    return json.dumps(config, sort_keys=True, separators=(",", ":"))


def trial_id(config: dict) -> str:
    """A trial's identity: the first 16 hex digits of the SHA-256 of its canonical JSON."""
    return hashlib.sha256(canonical_json(config).encode("utf-8")).hexdigest()[:16]


@dataclass
class Trial:
    """One row of the store, decoded."""

    id: str
    config: dict
    status: str
    attempts: int
    epochs: list
    train_loss: float | None
    train_acc: float | None
    test_loss: float | None
    test_acc: float | None
    gap: float | None
    seconds: float | None
    threads: int | None
    created: float
    started: float | None
    finished: float | None
    host: str | None
    pid: int | None
    error: str | None

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Trial:
        d = dict(row)
        d["config"] = json.loads(d["config"])
        d["epochs"] = json.loads(d["epochs"]) if d["epochs"] else []
        return cls(**d)


class StoreError(DroplabError):
    """``sweep.db`` cannot be read or written (damaged, not a database, disk full); the message
    names the file and says what is kept."""


class Store:
    """``DIR/sweep.db``; open with ``Store(path)`` and use as a context manager (or ``close``)."""

    def __init__(self, path: str | Path, *, readonly: bool = False, no_trace: bool = False):
        """``readonly`` opens for reading; ``no_trace`` (a dry run) also leaves every byte of the
        folder as it was, where SQLite would otherwise add its ``-wal`` and ``-shm`` files."""
        self.path = Path(path)
        self._no_trace = no_trace
        self.conn = None
        if readonly and not self.path.exists():
            raise FileNotFoundError(f"no sweep database at {self.path}")
        try:
            self._open(readonly)
        except BaseException:
            self.close()
            raise
        self.conn.row_factory = sqlite3.Row

    def _open(self, readonly: bool) -> None:
        with self._errors():
            if readonly:
                uri = f"file:{self.path.resolve()}?mode=ro"
                if self._no_trace and not Path(f"{self.path}-wal").exists():
                    uri += "&immutable=1"  # all of it is in the file: read it as a plain file
                self.conn = sqlite3.connect(uri, uri=True, timeout=30)
                self._check_opened()
                if not self._has_trials_table():
                    raise StoreError(f"{self.path} holds no sweep (no trials table)")
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                # autocommit mode: every write below opens its own transaction explicitly
                self.conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
                self._check_opened()
                self.conn.execute("PRAGMA journal_mode=WAL")
                self.conn.execute("PRAGMA synchronous=NORMAL")  # durable against a crash of ours
                self.conn.executescript(_SCHEMA)  # idempotent statements, each its own transaction
                self.conn.execute(
                    "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)",
                    (str(SCHEMA_VERSION),),
                )

    # -- plumbing ------------------------------------------------------------------------------

    def _check_opened(self) -> None:
        verdict = self.conn.execute("PRAGMA quick_check").fetchone()[0]
        if verdict != "ok":
            raise sqlite3.DatabaseError(f"database disk image is malformed ({verdict})")

    def _has_trials_table(self) -> bool:
        query = "SELECT 1 FROM sqlite_master WHERE type='table' AND name='trials'"
        return self.conn.execute(query).fetchone() is not None

    @contextmanager
    def _errors(self, *, decoding: bool = False):
        """``sqlite3`` errors (and, ``decoding`` rows, their decoding errors) -> one
        :class:`StoreError` naming the file."""
        try:
            yield
        except sqlite3.Error as e:
            raise StoreError(_explain(self.path, e)) from None
        except (ValueError, TypeError) as e:
            if not decoding:
                raise
            raise StoreError(
                f"{self.path} is damaged: a row does not decode ({type(e).__name__}: "
                f"{str(e)[:80]}); {_ASIDE}"
            ) from None

    @contextmanager
    def _transaction(self):
        """One transaction, its errors named (``BEGIN IMMEDIATE`` ... ``COMMIT``)."""
        with self._errors(), _Transaction(self.conn):
            yield

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- writes (the driver only) --------------------------------------------------------------

    def add(self, configs: Iterable[tuple[str, dict]]) -> int:
        """Insert the trials not yet stored, as ``pending``; returns how many were new."""
        now = time.time()
        rows = [(tid, canonical_json(cfg), now) for tid, cfg in configs]
        with self._transaction():
            before = self.conn.total_changes
            self.conn.executemany(
                "INSERT OR IGNORE INTO trials (id, config, created) VALUES (?, ?, ?)", rows
            )
            return self.conn.total_changes - before

    def reset_running(self) -> int:
        """Trials a dead driver left ``running`` go back to ``pending``; returns how many."""
        with self._transaction():
            cur = self.conn.execute("UPDATE trials SET status='pending' WHERE status='running'")
            return cur.rowcount

    def mark_running(self, tid: str, *, threads: int | None = None) -> None:
        with self._transaction():
            self.conn.execute(
                "UPDATE trials SET status='running', attempts=attempts+1, started=?, threads=?,"
                " finished=NULL WHERE id=?",
                (time.time(), threads, tid),
            )

    def mark_pending(self, ids: Iterable[str]) -> None:
        with self._transaction():
            self.conn.executemany(
                "UPDATE trials SET status='pending' WHERE id=? AND status='running'",
                [(t,) for t in ids],
            )

    def mark_done(self, tid: str, result: dict) -> None:
        """Record a finished trial: ``result`` has ``epochs`` and optional ``seconds``,
        ``host``, ``pid``, ``started``, ``finished``, ``threads`` (worker-side values)."""
        epochs = result["epochs"]
        last = epochs[-1] if epochs else {}
        # the gap is measured with dropout off when the trainer says how (train_acc_eval)
        train_acc = last.get("train_acc_eval", last.get("train_acc"))
        test_acc = last.get("test_acc")
        gap = train_acc - test_acc if train_acc is not None and test_acc is not None else None
        with self._transaction():
            self.conn.execute(
                "UPDATE trials SET status='done', epochs=?, train_loss=?, train_acc=?,"
                " test_loss=?, test_acc=?, gap=?, seconds=?, host=?, pid=?,"
                " started=COALESCE(?, started), finished=?, threads=COALESCE(?, threads),"
                " error=NULL WHERE id=?",
                (
                    json.dumps(epochs),
                    last.get("train_loss_eval", last.get("train_loss")),
                    train_acc,
                    last.get("test_loss"),
                    test_acc,
                    gap,
                    result.get("seconds"),
                    result.get("host"),
                    result.get("pid"),
                    result.get("started"),
                    result.get("finished", time.time()),
                    result.get("threads"),
                    tid,
                ),
            )

    def mark_failed(self, tid: str, error: str, *, host=None, pid=None) -> None:
        with self._transaction():
            self.conn.execute(
                "UPDATE trials SET status='failed', error=?, host=COALESCE(?, host),"
                " pid=COALESCE(?, pid), finished=? WHERE id=?",
                (error, host, pid, time.time(), tid),
            )

    def set_meta(self, key: str, value) -> None:
        with self._transaction():
            self.conn.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, json.dumps(value))
            )

    # -- reads ---------------------------------------------------------------------------------

    def meta(self, key: str, default=None):
        with self._errors(decoding=True):
            row = self.conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
            return json.loads(row[0]) if row else default

    def statuses(self, ids: Iterable[str] | None = None) -> dict[str, str]:
        """``{id: status}`` for the given trials (all when ``ids`` is None)."""
        with self._errors():
            rows = self.conn.execute("SELECT id, status FROM trials").fetchall()
        found = {r[0]: r[1] for r in rows}
        return found if ids is None else {t: found[t] for t in ids if t in found}

    def counts(self, ids: Iterable[str] | None = None) -> dict[str, int]:
        out = dict.fromkeys(STATUSES, 0)
        for status in self.statuses(ids).values():
            out[status] += 1
        return out

    def trials(self, status: str | None = None) -> list[Trial]:
        with self._errors(decoding=True):
            if status is None:
                rows = self.conn.execute("SELECT * FROM trials ORDER BY created, id").fetchall()
            else:
                rows = self.conn.execute(
                    "SELECT * FROM trials WHERE status=? ORDER BY created, id", (status,)
                ).fetchall()
            return [Trial.from_row(r) for r in rows]

    def check(self) -> str:
        """SQLite's own integrity check (``"ok"`` when the file is sound)."""
        with self._errors():
            return self.conn.execute("PRAGMA integrity_check").fetchone()[0]


class _Transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``, rolled back on any exception (Ctrl-C included)."""

    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn

    def __enter__(self):
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.conn.execute("COMMIT")
            return False
        try:
            self.conn.execute("ROLLBACK")
        except sqlite3.Error:  # SQLite rolled back already (a failed write), or cannot
            pass
        return False


_ASIDE = "nothing was changed; move it aside to start the sweep afresh"


def _explain(path: Path, e: sqlite3.Error) -> str:
    """One line for an ``sqlite3`` error on ``path``."""
    text = "".join(c if c.isprintable() else "?" for c in " ".join(str(e).split()))[:100]
    if "Could not decode" in text:  # damaged text in a row
        return f"{path} is damaged (a row does not decode: {text}); {_ASIDE}"
    if isinstance(e, sqlite3.OperationalError) and any(
        s in text for s in ("disk is full", "disk I/O error", "readonly", "unable to open")
    ):
        return (
            f"cannot write {path}: {text} (a full disk or a file-size limit?); the trials "
            "recorded before are kept: free some space and run the same command to resume"
        )
    if isinstance(e, sqlite3.DatabaseError) and not isinstance(e, sqlite3.OperationalError):
        return f"{path} is damaged or is not a sweep database ({text}); {_ASIDE}"
    return f"{path}: {text}"
