"""promptcli's SQLite files: where they live, and opening one that can be trusted.

Every file runs in WAL mode, so readers never wait for a writer and a crash mid-transaction
leaves the last committed state. Every open is checked: a file that is not SQLite, fails
`PRAGMA quick_check`, or lacks the expected schema name and version is never trusted — it is
reported (`warnings.warn` or the `on_warning` callback) and moved aside to
`<name>.corrupt-<UTC time>` (with its -wal/-shm files), and an empty database is built in its
place. A database locked by another process is waited for `timeout` seconds, then a
`StoreError`. WAL needs a local file system (not NFS). One object per thread.
"""
from __future__ import annotations

import os
import sqlite3
import time
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from ..errors import StoreError

_BUSY, _LOCKED, _CORRUPT, _NOTADB = 5, 6, 11, 26  # SQLite primary result codes


class StoreWarning(UserWarning):
    """A store file was unusable and has been moved aside."""


def store_home() -> Path:
    """`$PROMPTCLI_HOME`, else `$XDG_CACHE_HOME/promptcli`, else `~/.cache/promptcli`.

    Empty or relative `XDG_CACHE_HOME` is ignored, as the XDG spec asks.
    """
    home = os.environ.get("PROMPTCLI_HOME")
    if home:
        return Path(home).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / "promptcli"
    return Path.home() / ".cache" / "promptcli"


def default_store_path() -> Path:
    """The run history: small, precious, kept with full durability."""
    return store_home() / "store.sqlite"


def default_cache_path() -> Path:
    """The score cache: large and disposable, so a separate file (see `promptcli.store.scores`)."""
    return store_home() / "scores.sqlite"


def _code(exc: sqlite3.Error) -> int:
    return getattr(exc, "sqlite_errorcode", 0) & 0xFF


def _is_corrupt(exc: sqlite3.Error) -> bool:
    text = str(exc)
    return _code(exc) in (_CORRUPT, _NOTADB) or "not a database" in text or "malformed" in text


class SQLiteFile:
    """One checked SQLite file with a schema name and version; subclasses give the tables.

    `on_warning` receives the message when the file was moved aside (default: `warnings.warn`
    with a `StoreWarning`); `timeout` is how long to wait for another process's write lock.
    """

    SCHEMA: str = ""
    VERSION: int = 1
    TABLES: tuple[str, ...] = ()  # DDL statements, run once on an empty file
    SYNCHRONOUS = "FULL"

    def __init__(self, path: str | os.PathLike, *, timeout: float = 30.0,
                 on_warning: Callable[[str], None] | None = None):
        self.path = Path(path)
        if self.path.is_dir():
            raise StoreError("this is a folder; give the database file's path", path=str(self.path))
        self.timeout = timeout
        self._warn = on_warning or (lambda message: warnings.warn(message, StoreWarning, stacklevel=4))
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the folder: {exc.strerror}", path=str(self.path.parent)) from None
        self._conn = self._open()

    # -- opening and checking --------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        # isolation_level=None: no implicit transactions; `_transaction` opens them explicitly.
        conn = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={self.SYNCHRONOUS}")
        return conn

    def _open(self) -> sqlite3.Connection:
        conn = None
        try:
            conn = self._connect()
            problem = self._problem(conn)
            if problem is None:
                return conn
        except sqlite3.Error as exc:
            if not _is_corrupt(exc):
                if conn is not None:
                    conn.close()
                raise self._error(exc) from None
            problem = f"not a usable SQLite database ({exc})"
        if conn is not None:
            conn.close()
        aside = self._move_aside()
        self._warn(f"{self.path}: {problem}; moved it aside to {aside} and started an empty {self.SCHEMA}")
        try:
            conn = self._connect()
            if self._problem(conn) is None:
                return conn
        except sqlite3.Error as exc:
            raise self._error(exc) from None
        raise StoreError("a freshly created database failed its checks", path=str(self.path))

    def _problem(self, conn: sqlite3.Connection) -> str | None:
        """Why this file cannot be trusted, or None; an empty file gets the schema."""
        rows = conn.execute("PRAGMA quick_check").fetchall()
        if rows != [("ok",)]:
            return "PRAGMA quick_check failed: " + "; ".join(str(r[0]) for r in rows[:3])
        if not self._tables(conn):
            with self._transaction(conn):  # the write lock only for a new file
                if not self._tables(conn):  # another process may have built it meanwhile
                    for statement in ("CREATE TABLE promptcli_schema (name TEXT NOT NULL, version INTEGER NOT NULL)",
                                      *self.TABLES):
                        conn.execute(statement)
                    conn.execute("INSERT INTO promptcli_schema VALUES (?, ?)", (self.SCHEMA, self.VERSION))
        tables = self._tables(conn)
        if "promptcli_schema" not in tables:
            return f"not a promptcli database (tables: {', '.join(sorted(tables))})"
        found = conn.execute("SELECT name, version FROM promptcli_schema").fetchall()
        if found != [(self.SCHEMA, self.VERSION)]:
            return f"schema {found} where {self.SCHEMA} version {self.VERSION} was expected"
        return None

    @staticmethod
    def _tables(conn: sqlite3.Connection) -> set[str]:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}

    def _move_aside(self) -> Path:
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        n = 1
        while aside.exists():
            aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}-{n}")
            n += 1
        try:
            # The -wal/-shm files belong to the old file: left behind, SQLite could replay
            # them into the new one.
            for suffix in ("-wal", "-shm", ""):
                old = Path(str(self.path) + suffix)
                if old.exists():
                    os.replace(old, str(aside) + suffix)
        except OSError as exc:
            raise StoreError(f"the database is unusable and cannot be moved aside: {exc.strerror}",
                             path=str(self.path)) from None
        return aside

    # -- transactions and errors -----------------------------------------------------------

    def _error(self, exc: sqlite3.Error) -> StoreError:
        if _code(exc) in (_BUSY, _LOCKED) or "locked" in str(exc):
            return StoreError(f"the database is locked by another process (waited {self.timeout:g} s)",
                              path=str(self.path), hint="wait for the other promptcli to finish, or retry")
        if _is_corrupt(exc):
            return StoreError(f"the database is corrupted ({exc})", path=str(self.path),
                              hint="open it again: promptcli moves a corrupted file aside and starts anew")
        return StoreError(f"database error: {exc}", path=str(self.path))

    @contextmanager
    def _transaction(self, conn: sqlite3.Connection | None = None) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE … COMMIT; any exception rolls the whole transaction back."""
        conn = conn or self._conn
        conn.execute("BEGIN IMMEDIATE")  # take the write lock now, waiting up to `timeout`
        try:
            yield conn
        except BaseException:
            if conn.in_transaction:  # SQLite may have rolled back already (e.g. disk full)
                conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    @contextmanager
    def _sqlite_errors(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise self._error(exc) from None

    def close(self) -> None:
        self._conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
