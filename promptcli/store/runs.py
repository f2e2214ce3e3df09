"""The run store: every run and sweep, with its run.json and metrics, in one SQLite file.

The history (`store.sqlite`) and the score cache (`scores.sqlite`, `promptcli.store.scores`) are
separate files because they are worth different things: the cache is disposable and large (a
row per example × variant × model), written in bursts and kept with `synchronous=NORMAL`; the
history is small, precious and kept with full durability. Deleting, rebuilding or locking the
cache never touches the history. Opening, checking and crash safety: `promptcli.store.sqlite`.
"""
from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from ..errors import StoreError
from ..spec.options import RunKind, values
from .sqlite import SQLiteFile

KINDS = values(RunKind)
_COLUMNS = "id, kind, parent, created, status, name, out_dir, record, metrics"
_UPDATABLE = ("parent", "status", "name", "out_dir", "record", "metrics")


@dataclass(frozen=True)
class StoredRun:
    """A row of the run store; `record` is the whole run.json, `parent` the id of its sweep."""

    id: int
    kind: str
    parent: int | None
    created: str
    status: str
    name: str
    out_dir: str | None
    record: dict[str, Any]
    metrics: dict[str, Any]

    @property
    def shown_status(self) -> str:
        """`running` for a run whose process is gone (killed, machine restarted) reads `stale`."""
        process = self.record.get("process") or {}
        if self.status != "running" or process.get("host") != socket.gethostname() or "pid" not in process:
            return self.status
        try:
            os.kill(process["pid"], 0)
        except ProcessLookupError:
            return "stale (its process is gone; --resume continues it)"
        except PermissionError:
            pass  # another user's live process
        return self.status


def _to_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def _row(row: tuple) -> StoredRun:
    return StoredRun(*row[:7], record=json.loads(row[7]), metrics=json.loads(row[8]))


class RunStore(SQLiteFile):
    """Every run and sweep, newest last; a sweep's runs point at it through `parent`."""

    SCHEMA = "promptcli-runs"
    TABLES = (
        """CREATE TABLE runs (
            id INTEGER PRIMARY KEY,
            kind TEXT NOT NULL CHECK (kind IN ('run', 'sweep')),
            parent INTEGER REFERENCES runs(id),
            created TEXT NOT NULL,
            status TEXT NOT NULL,
            name TEXT NOT NULL,
            out_dir TEXT,
            record TEXT NOT NULL,
            metrics TEXT NOT NULL
        )""",
        "CREATE INDEX runs_parent ON runs(parent)",
    )

    def add(self, kind: str, record: Mapping[str, Any], metrics: Mapping[str, Any],
            out_dir: str | os.PathLike | None, parent: int | None = None, *, name: str | None = None,
            status: str | None = None) -> int:
        """Store a run or sweep and return its id.

        `name` defaults to the record's `name` or `template_name`, `status` to its `status`
        (else "finished"). A parent must be a stored sweep.
        """
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        name = name or record.get("name") or record.get("template_name") or ""
        status = status or record.get("status") or "finished"
        created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        with self._sqlite_errors(), self._transaction() as conn:
            if parent is not None:
                self._check_parent(conn, parent)
            cursor = conn.execute(
                "INSERT INTO runs (kind, parent, created, status, name, out_dir, record, metrics)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (kind, parent, created, status, str(name), None if out_dir is None else str(out_dir),
                 _to_json(record), _to_json(metrics)))
            return int(cursor.lastrowid)

    def update(self, id: int, **fields: Any) -> StoredRun:
        """Change some of parent, status, name, out_dir, record, metrics; returns the new row."""
        unknown = sorted(set(fields) - set(_UPDATABLE))
        if unknown:
            raise ValueError(f"cannot update {unknown}; updatable fields: {list(_UPDATABLE)}")
        values = {k: _to_json(v) if k in ("record", "metrics") else v for k, v in fields.items()}
        if values.get("out_dir") is not None:
            values["out_dir"] = str(values["out_dir"])
        with self._sqlite_errors(), self._transaction() as conn:
            self._get(conn, id)
            if values.get("parent") is not None:
                self._check_parent(conn, values["parent"])
            if values:
                assignments = ", ".join(f"{k} = ?" for k in values)  # keys are from _UPDATABLE only
                conn.execute(f"UPDATE runs SET {assignments} WHERE id = ?", (*values.values(), id))
            return self._get(conn, id)

    def list(self, limit: int = 50, kind: str | None = None, parent: int | None = None) -> list[StoredRun]:
        """The newest `limit` rows (newest first), optionally of one kind or one sweep."""
        where, args = [], []
        if kind is not None:
            where.append("kind = ?")
            args.append(kind)
        if parent is not None:
            where.append("parent = ?")
            args.append(parent)
        sql = f"SELECT {_COLUMNS} FROM runs {'WHERE ' + ' AND '.join(where) if where else ''}" \
              " ORDER BY id DESC LIMIT ?"
        with self._sqlite_errors():
            return [_row(r) for r in self._conn.execute(sql, (*args, limit))]

    def get(self, id: int) -> StoredRun:
        with self._sqlite_errors():
            return self._get(self._conn, id)

    def compare(self, ids: Sequence[int]) -> list[StoredRun]:
        """The rows of `ids`, in that order; every missing id is named in one error."""
        with self._sqlite_errors():
            found = {}
            for id in dict.fromkeys(ids):
                row = self._conn.execute(f"SELECT {_COLUMNS} FROM runs WHERE id = ?", (id,)).fetchone()
                if row is not None:
                    found[id] = _row(row)
        missing = [id for id in ids if id not in found]
        if missing:
            raise StoreError(f"no stored run with id {', '.join(map(str, missing))}", path=str(self.path),
                             hint="`promptcli runs` lists the stored runs")
        return [found[id] for id in ids]

    def _get(self, conn: sqlite3.Connection, id: int) -> StoredRun:
        row = conn.execute(f"SELECT {_COLUMNS} FROM runs WHERE id = ?", (id,)).fetchone()
        if row is None:
            raise StoreError(f"no stored run with id {id}", path=str(self.path),
                             hint="`promptcli runs` lists the stored runs")
        return _row(row)

    def _check_parent(self, conn: sqlite3.Connection, parent: int) -> None:
        if self._get(conn, parent).kind != "sweep":
            raise StoreError(f"run {parent} is not a sweep and cannot be a parent", path=str(self.path))


def open_store(store: bool | str | os.PathLike | None) -> RunStore | None:
    """None/True: the default run store; a path: that file; False: no store."""
    if store is False:
        return None
    from ..progress import warn
    from .sqlite import default_store_path

    return RunStore(default_store_path() if store in (None, True) else store, on_warning=warn)
