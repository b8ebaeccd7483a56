"""The UI's persistent, queryable history: alerts (every status transition), actions with their
results and the silences that suppressed them, and closed metric windows, in SQLite (the Python
standard library's) under the state directory, bounded by retention.

Written by the ingest threads (app.web.ingest), one transaction per batch of records together with
the Kafka offsets they came from, so a restart resumes exactly after what is stored. Read by the
API through `reader()`: one connection per thread (WAL mode: readers never wait for the writer).
Every query is bounded: a time range no wider than the retention, and a row limit.

Records are kept as their JSON (`record`) next to the columns queries filter on, so what the API
returns is the record as it was on the topic.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import orjson

from app.actions.join import ActionRow
from app.globs import is_glob

__all__ = ["Batch", "HistoryStore", "Retention", "StoreError"]

_SCHEMA_VERSION: Final = 1
_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS offsets (topic TEXT NOT NULL, partition INTEGER NOT NULL, next_offset INTEGER NOT NULL,
    PRIMARY KEY (topic, partition));
CREATE TABLE IF NOT EXISTS alerts (id TEXT PRIMARY KEY, time INTEGER NOT NULL, subject TEXT NOT NULL,
    name TEXT NOT NULL, to_state TEXT NOT NULL, trace_id TEXT, cause_event_id TEXT, record BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS alerts_time ON alerts (time);
CREATE INDEX IF NOT EXISTS alerts_identity ON alerts (subject, name, time);
CREATE INDEX IF NOT EXISTS alerts_cause ON alerts (cause_event_id);
CREATE TABLE IF NOT EXISTS actions (id TEXT PRIMARY KEY, time INTEGER NOT NULL, rule TEXT NOT NULL,
    target TEXT NOT NULL, status TEXT NOT NULL, event_id TEXT, trace_id TEXT, record BLOB NOT NULL,
    silence BLOB);
CREATE INDEX IF NOT EXISTS actions_time ON actions (time);
CREATE INDEX IF NOT EXISTS actions_trace ON actions (trace_id);
CREATE INDEX IF NOT EXISTS actions_event ON actions (event_id);
CREATE TABLE IF NOT EXISTS results (id TEXT PRIMARY KEY, action_id TEXT NOT NULL, time INTEGER NOT NULL,
    status TEXT NOT NULL, record BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS results_action ON results (action_id, time);
CREATE INDEX IF NOT EXISTS results_time ON results (time);
CREATE TABLE IF NOT EXISTS windows (subject TEXT NOT NULL, name TEXT NOT NULL, metric TEXT NOT NULL,
    size_ms INTEGER NOT NULL, window_start INTEGER NOT NULL, count INTEGER NOT NULL, sum REAL, min REAL,
    max REAL, mean REAL, last REAL, p50 REAL, p95 REAL, p99 REAL,
    PRIMARY KEY (subject, name, size_ms, window_start, metric)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS windows_start ON windows (window_start);
"""
_WINDOW_FIELDS: Final = ("subject", "name", "metric", "size_ms", "window_start", "count", "sum", "min", "max", "mean",
                         "last", "p50", "p95", "p99")
#: A result that only reports a repeat delivery does not hide the real outcome (as ActionRow.status).
_DUPLICATE: Final = "DUPLICATE"


class StoreError(Exception):
    """The history database cannot be opened or used; the message names the file and the problem."""


@dataclass(frozen=True)
class Retention:
    """How long each kind of history is kept (ms)."""

    history_ms: int = 30 * 86_400_000
    metrics_ms: int = 6 * 3_600_000


def _json(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)


def _glob_sql(column: str, pattern: str, params: list[Any]) -> str:
    """A WHERE fragment for a shell glob on `column`: SQLite's GLOB has the same * ? [..] syntax (and
    is case-sensitive); a literal is plain equality, which uses the index."""
    if pattern == "*":
        return "1"
    params.append(pattern)
    return f"{column} GLOB ?" if is_glob(pattern) else f"{column} = ?"


class Batch:
    """The writes of one ingest batch (one transaction). Duplicates (a topic read again after a
    restart) replace or are ignored, never doubled."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        #: what the live stream should hear of: (kind, record) in topic order
        self.changes: list[tuple[str, dict[str, Any]]] = []

    def alert(self, record: dict[str, Any]) -> None:
        cur = self._conn.execute(
            "INSERT OR IGNORE INTO alerts (id, time, subject, name, to_state, trace_id, cause_event_id, record) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (record["id"], record["time"], record["subject"], record["name"], record["to_state"],
             record.get("trace_id"), record.get("cause_event_id"), _json(record)))
        if cur.rowcount:
            self.changes.append(("alert", record))

    def action(self, record: dict[str, Any]) -> None:
        status = self._status_from_results(record["id"]) or "PENDING"
        cur = self._conn.execute(
            "INSERT OR IGNORE INTO actions (id, time, rule, target, status, event_id, trace_id, record) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (record["id"], record["time"], record["rule"], record["target"], status, record.get("event_id"),
             record.get("trace_id"), _json(record)))
        if not cur.rowcount and self._held_by_dependency(record["id"]):
            # A firing a dependency held back (recorded as suppressed) and then released: the row
            # becomes the sent action; its `silence` column keeps what held it (ActionRow.held).
            cur = self._conn.execute("UPDATE actions SET status = ?, record = ? WHERE id = ?",
                                     (status, _json(record), record["id"]))
        if cur.rowcount:
            self.changes.append(("action", {**record, "status": status}))

    def suppressed(self, record: dict[str, Any]) -> None:
        """An actions-suppressed record: {"action": {...}, "silence", "storm" or "dependency": {...}, "time": ms}."""
        action = record.get("action")
        silence = record.get("silence") or record.get("storm") or record.get("dependency")
        if not isinstance(action, dict) or not isinstance(action.get("id"), str):
            return
        cur = self._conn.execute(
            "INSERT OR IGNORE INTO actions (id, time, rule, target, status, event_id, trace_id, record, silence) "
            "VALUES (?, ?, ?, ?, 'SUPPRESSED', ?, ?, ?, ?)",
            (action["id"], int(action.get("time") or record.get("time") or 0), str(action.get("rule", "")),
             str(action.get("target", "")), action.get("event_id"), action.get("trace_id"), _json(action),
             _json(silence or {})))
        if not cur.rowcount and "dependency" in record:
            # released before this record was read: keep what held it beside the sent action
            self._conn.execute("UPDATE actions SET silence = ? WHERE id = ? AND status != 'SUPPRESSED'",
                               (_json(silence or {}), action["id"]))
        if cur.rowcount:
            self.changes.append(("suppressed", record))

    def result(self, record: dict[str, Any]) -> None:
        cur = self._conn.execute(
            "INSERT OR IGNORE INTO results (id, action_id, time, status, record) VALUES (?, ?, ?, ?, ?)",
            (record["id"], record["action_id"], record["time"], record["status"], _json(record)))
        if not cur.rowcount:
            return
        status = self._status_from_results(record["action_id"])
        if status is not None:
            self._conn.execute("UPDATE actions SET status = ? WHERE id = ? AND status != 'SUPPRESSED'",
                               (status, record["action_id"]))
        self.changes.append(("result", record))

    def _held_by_dependency(self, action_id: str) -> bool:
        """Whether the action is recorded as suppressed by a failing dependency (so far)."""
        row = self._conn.execute("SELECT silence FROM actions WHERE id = ? AND status = 'SUPPRESSED'",
                                 (action_id,)).fetchone()
        if row is None or row[0] is None:
            return False
        by = orjson.loads(row[0])
        return isinstance(by, dict) and by.get("guard") == "dependency"

    def _status_from_results(self, action_id: str) -> str | None:
        """The action's status by its results (ActionRow.status: the last one that is not a
        DUPLICATE report, else the last one); None without results."""
        rows = self._conn.execute("SELECT status FROM results WHERE action_id = ? ORDER BY time, id",
                                  (action_id,)).fetchall()
        if not rows:
            return None
        real = [r[0] for r in rows if r[0] != _DUPLICATE] or [r[0] for r in rows]
        return str(real[-1])

    def window(self, record: dict[str, Any]) -> None:
        self._conn.execute(
            f"INSERT OR REPLACE INTO windows ({', '.join(_WINDOW_FIELDS)}) "
            f"VALUES ({', '.join('?' * len(_WINDOW_FIELDS))})",
            tuple(record.get(f) for f in _WINDOW_FIELDS))

    def offset(self, topic: str, partition: int, next_offset: int) -> None:
        """Where to resume reading `topic`'s partition (written in the same transaction as its records)."""
        self._conn.execute("INSERT OR REPLACE INTO offsets (topic, partition, next_offset) VALUES (?, ?, ?)",
                           (topic, partition, next_offset))


class HistoryStore:
    """The SQLite file and its queries (see the module docstring)."""

    def __init__(self, path: Path, retention: Retention | None = None) -> None:
        self.path = Path(path)
        self.retention = retention or Retention()
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = self._connect()
            conn.executescript(_SCHEMA)
            conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)",
                         (str(_SCHEMA_VERSION),))
            conn.commit()
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open the UI's history database {self.path}: {exc}") from exc

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA busy_timeout=30000")
        with self._lock:
            self._connections.append(conn)
        return conn

    def reader(self) -> sqlite3.Connection:
        """This thread's connection (made on first use)."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._connect()
        return conn

    @contextmanager
    def batch(self) -> Iterator[Batch]:
        """One write transaction on this thread's connection: committed when the block ends, rolled
        back if it raises."""
        conn = self.reader()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield Batch(conn)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def close(self) -> None:
        """Close every connection this store opened."""
        with self._lock:
            connections, self._connections = self._connections, []
        for conn in connections:
            try:
                conn.close()
            except sqlite3.Error:
                pass
        self._local = threading.local()

    # -- offsets --------------------------------------------------------------------------------------
    def offsets(self, topic: str) -> dict[int, int]:
        """Partition -> next offset to read, for what is stored of `topic`."""
        rows = self.reader().execute("SELECT partition, next_offset FROM offsets WHERE topic = ?", (topic,))
        return {int(p): int(o) for p, o in rows}

    # -- retention ------------------------------------------------------------------------------------
    def prune(self, now_ms: int) -> dict[str, int]:
        """Delete what is older than the retention; returns the rows deleted per table."""
        history_before = now_ms - self.retention.history_ms
        metrics_before = now_ms - self.retention.metrics_ms
        deleted: dict[str, int] = {}
        with self.batch() as b:
            conn = b._conn
            for table, column, before in (("alerts", "time", history_before), ("actions", "time", history_before),
                                          ("results", "time", history_before),
                                          ("windows", "window_start", metrics_before)):
                deleted[table] = conn.execute(f"DELETE FROM {table} WHERE {column} < ?", (before,)).rowcount
        return deleted

    def counts(self) -> dict[str, int]:
        """Rows per table (for /healthz and the info endpoint)."""
        conn = self.reader()
        return {t: int(conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0])
                for t in ("alerts", "actions", "results", "windows")}

    # -- alerts ---------------------------------------------------------------------------------------
    def alerts(self, *, since_ms: int, until_ms: int, subject: str = "*", name: str = "*",
               states: Sequence[str] = (), limit: int = 100) -> list[dict[str, Any]]:
        """Alerts in [since_ms, until_ms], newest first."""
        params: list[Any] = [since_ms, until_ms]
        where = ["time >= ?", "time <= ?", _glob_sql("subject", subject, params), _glob_sql("name", name, params)]
        if states:
            where.append(f"to_state IN ({', '.join('?' * len(states))})")
            params.extend(states)
        params.append(limit)
        rows = self.reader().execute(
            f"SELECT record FROM alerts WHERE {' AND '.join(where)} ORDER BY time DESC, id DESC LIMIT ?", params)
        return [orjson.loads(r[0]) for r in rows]

    def alert(self, alert_id: str) -> dict[str, Any] | None:
        row = self.reader().execute("SELECT record FROM alerts WHERE id = ?", (alert_id,)).fetchone()
        return orjson.loads(row[0]) if row else None

    def alerts_caused_by(self, event_ids: Iterable[str]) -> list[dict[str, Any]]:
        """Alerts whose cause is one of these events."""
        ids = list(dict.fromkeys(event_ids))[:500]
        if not ids:
            return []
        rows = self.reader().execute(
            f"SELECT record FROM alerts WHERE cause_event_id IN ({', '.join('?' * len(ids))}) ORDER BY time", ids)
        return [orjson.loads(r[0]) for r in rows]

    # -- actions --------------------------------------------------------------------------------------
    def actions(self, *, since_ms: int, until_ms: int, rule: str = "*", target: str = "*",
                states: Sequence[str] = (), suppressed: bool | None = None, limit: int = 100) -> list[ActionRow]:
        """Actions in [since_ms, until_ms] joined with their results, newest first."""
        params: list[Any] = [since_ms, until_ms]
        where = ["time >= ?", "time <= ?", _glob_sql("rule", rule, params), _glob_sql("target", target, params)]
        if states:
            where.append(f"status IN ({', '.join('?' * len(states))})")
            params.extend(states)
        if suppressed is not None:
            where.append("status = 'SUPPRESSED'" if suppressed else "status != 'SUPPRESSED'")
        params.append(limit)
        rows = self.reader().execute(
            f"SELECT id, record, silence, status FROM actions WHERE {' AND '.join(where)} ORDER BY time DESC, id DESC "
            "LIMIT ?", params).fetchall()
        return self._joined(rows)

    def _joined(self, rows: Sequence[tuple[Any, ...]]) -> list[ActionRow]:
        ids = [r[0] for r in rows]
        results: dict[str, list[dict[str, Any]]] = {i: [] for i in ids}
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            for action_id, record in self.reader().execute(
                    f"SELECT action_id, record FROM results WHERE action_id IN ({', '.join('?' * len(chunk))}) "
                    "ORDER BY time, id", chunk):
                results[action_id].append(orjson.loads(record))
        joined = []
        for action_id, record, silence, status in rows:
            by = orjson.loads(silence) if silence is not None else None
            suppressed = status == "SUPPRESSED"
            joined.append(ActionRow(orjson.loads(record), results[action_id], by if suppressed else None,
                                    None if suppressed else by))
        return joined

    def actions_by_ids(self, action_ids: Iterable[str]) -> list[ActionRow]:
        ids = list(dict.fromkeys(action_ids))[:1000]
        if not ids:
            return []
        rows = self.reader().execute(
            f"SELECT id, record, silence, status FROM actions WHERE id IN ({', '.join('?' * len(ids))}) "
            "ORDER BY time, id", ids).fetchall()
        return self._joined(rows)

    def actions_of_trace(self, trace_id: str, event_ids: Iterable[str] = (), *, limit: int = 1000) -> list[ActionRow]:
        """Actions of a trace: those carrying the trace id or caused by one of `event_ids`."""
        ids = [trace_id, *dict.fromkeys(e for e in event_ids if e != trace_id)][:500]
        marks = ", ".join("?" * len(ids))
        rows = self.reader().execute(
            f"SELECT id, record, silence, status FROM actions WHERE trace_id = ? OR event_id IN ({marks}) "
            "ORDER BY time, id LIMIT ?", [trace_id, *ids, limit]).fetchall()
        return self._joined(rows)

    def result(self, result_id: str) -> dict[str, Any] | None:
        row = self.reader().execute("SELECT record FROM results WHERE id = ?", (result_id,)).fetchone()
        return orjson.loads(row[0]) if row else None

    # -- metric windows -------------------------------------------------------------------------------
    def windows(self, *, subject: str, name: str, metric: str | None, size_ms: int | None, since_ms: int,
                until_ms: int, limit: int) -> list[dict[str, Any]]:
        """Closed windows of one identity starting in [since_ms, until_ms], oldest first."""
        params: list[Any] = [subject, name, since_ms, until_ms]
        where = ["subject = ?", "name = ?", "window_start >= ?", "window_start <= ?"]
        if metric is not None:
            where.append("metric = ?")
            params.append(metric)
        if size_ms is not None:
            where.append("size_ms = ?")
            params.append(size_ms)
        params.append(limit)
        rows = self.reader().execute(
            f"SELECT {', '.join(_WINDOW_FIELDS)} FROM windows WHERE {' AND '.join(where)} "
            "ORDER BY size_ms, window_start, metric LIMIT ?", params)
        return [dict(zip(_WINDOW_FIELDS, r, strict=True)) for r in rows]

    def metric_names(self, subject: str, name: str) -> list[str]:
        rows = self.reader().execute("SELECT DISTINCT metric FROM windows WHERE subject = ? AND name = ?",
                                     (subject, name))
        return sorted(str(r[0]) for r in rows)

