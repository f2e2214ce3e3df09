"""Run store and score cache: round trips, cache accounting, checksums, corrupted files, crashes, locks."""
from __future__ import annotations

import math
import sqlite3
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from conftest import REPO
from promptcli.errors import StoreError
from promptcli.store.runs import RunStore
from promptcli.store.scores import CacheStats, ScoreCache, cache_key
from promptcli.store.sqlite import StoreWarning, default_cache_path, default_store_path

RECORD = {"status": "finished", "template_name": "sst2-manual", "config": {"model": "gpt2", "seed": 0},
          "hashes": {"data": "ab12"}, "note": "ünïcode ✓"}
METRICS = {"n": 4, "accuracy": 0.75, "macro_f1": 0.7333, "confusion": {"labels": ["neg", "pos"],
                                                                     "matrix": [[1, 1], [0, 2]]}}


# ---- locations -------------------------------------------------------------------------------

def test_default_paths(monkeypatch, tmp_path):
    monkeypatch.setenv("PROMPTCLI_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_store_path() == tmp_path / "home" / "store.sqlite"
    assert default_cache_path() == tmp_path / "home" / "scores.sqlite"
    monkeypatch.delenv("PROMPTCLI_HOME")
    assert default_store_path() == tmp_path / "xdg" / "promptcli" / "store.sqlite"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    assert default_store_path() == tmp_path / "user" / ".cache" / "promptcli" / "store.sqlite"


# ---- runs ------------------------------------------------------------------------------------

def test_runs_round_trip(tmp_path):
    path = tmp_path / "deep" / "store.sqlite"  # the folder is created
    with RunStore(path) as store:
        sweep = store.add("sweep", {"name": "sst2 sweep"}, {}, tmp_path / "sweep", name=None, status="running")
        first = store.add("run", RECORD, METRICS, tmp_path / "a", parent=sweep)
        second = store.add("run", {**RECORD, "status": "interrupted"}, {"n": 2}, None, parent=sweep)
        alone = store.add("run", RECORD, METRICS, "runs/b")
        got = store.get(first)
        assert (got.id, got.kind, got.parent, got.status, got.name, got.out_dir) == \
            (first, "run", sweep, "finished", "sst2-manual", str(tmp_path / "a"))
        assert got.record == RECORD and got.metrics == METRICS
        assert got.created.endswith("Z")
        assert store.get(second).status == "interrupted" and store.get(second).out_dir is None
        assert store.get(sweep).name == "sst2 sweep" and store.get(sweep).status == "running"

        assert [r.id for r in store.list()] == [alone, second, first, sweep]  # newest first
        assert [r.id for r in store.list(limit=2)] == [alone, second]
        assert [r.id for r in store.list(kind="sweep")] == [sweep]
        assert [r.id for r in store.list(parent=sweep)] == [second, first]
        assert [r.id for r in store.compare([alone, first])] == [alone, first]

        updated = store.update(sweep, status="finished", metrics={"best": first})
        assert (updated.status, updated.metrics) == ("finished", {"best": first})
        assert updated.record == {"name": "sst2 sweep"}
        assert store.get(sweep) == updated


def test_runs_survive_reopening(tmp_path):
    path = tmp_path / "store.sqlite"
    with RunStore(path) as store:
        run = store.add("run", RECORD, METRICS, "runs/a")
    with RunStore(path) as store:
        assert store.get(run).record == RECORD
        assert store.add("run", RECORD, METRICS, "runs/b") == run + 1


def test_unknown_ids_are_clear_errors(tmp_path):
    with RunStore(tmp_path / "store.sqlite") as store:
        run = store.add("run", RECORD, METRICS, None)
        with pytest.raises(StoreError, match="no stored run with id 99") as info:
            store.get(99)
        assert info.value.exit_code == 6 and "promptcli runs" in str(info.value)
        with pytest.raises(StoreError, match="no stored run with id 7, 8"):
            store.compare([run, 7, 8])
        with pytest.raises(StoreError, match="no stored run with id 5"):
            store.update(5, status="x")
        with pytest.raises(StoreError, match="not a sweep"):
            store.add("run", RECORD, METRICS, None, parent=run)
        with pytest.raises(ValueError, match="cannot update"):
            store.update(run, kind="sweep")
        with pytest.raises(ValueError, match="kind"):
            store.add("experiment", RECORD, METRICS, None)
        assert len(store.list()) == 1  # nothing half-written by the failed calls


def test_a_locked_store_times_out_with_a_clear_error(tmp_path):
    path = tmp_path / "store.sqlite"
    RunStore(path).close()
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    try:
        with RunStore(path, timeout=0.1) as store:
            assert store.list() == []  # WAL: reading does not wait for the writer
            with pytest.raises(StoreError, match="locked by another process"):
                store.add("run", RECORD, METRICS, None)
    finally:
        other.execute("ROLLBACK")
        other.close()


# ---- corrupted files -------------------------------------------------------------------------

def aside_files(path: Path) -> list[Path]:
    return sorted(path.parent.glob(path.name + ".corrupt-*"))


@pytest.mark.parametrize("kind", [RunStore, ScoreCache])
def test_a_garbage_file_is_reported_moved_aside_and_rebuilt(tmp_path, kind):
    path = tmp_path / "db.sqlite"
    garbage = b"definitely not SQLite\n" * 300
    path.write_bytes(garbage)
    with pytest.warns(StoreWarning, match="not a usable SQLite database.*moved it aside"):
        db = kind(path)
    [aside] = aside_files(path)
    assert aside.read_bytes() == garbage  # kept, byte for byte
    with db:
        if kind is RunStore:
            assert db.list() == [] and db.add("run", RECORD, METRICS, None) == 1
        else:
            db.put_many({"k": [1.0]})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the rebuilt file opens silently
        kind(path).close()


def test_a_damaged_database_fails_quick_check_and_is_moved_aside(tmp_path):
    path = tmp_path / "scores.sqlite"
    with ScoreCache(path) as cache:
        cache.put_many({f"key{i}": [float(i)] * 50 for i in range(400)})
    data = bytearray(path.read_bytes())
    assert len(data) > 10 * 4096
    data[4 * 4096: 8 * 4096] = b"\xff" * (4 * 4096)  # four whole B-tree pages, headers included
    path.write_bytes(bytes(data))
    messages = []
    with ScoreCache(path, on_warning=messages.append) as cache:
        assert cache.get_many(["key1"]) == {}
    assert len(messages) == 1 and str(path) in messages[0] and ".corrupt-" in messages[0]
    assert len(aside_files(path)) == 1


def test_a_wrong_schema_is_not_trusted(tmp_path):
    path = tmp_path / "store.sqlite"
    RunStore(path).close()
    messages: list[str] = []
    ScoreCache(path, on_warning=messages.append).close()  # a run store opened as a cache
    assert "promptcli-scores version 1 was expected" in messages[0]
    foreign = tmp_path / "other.sqlite"
    conn = sqlite3.connect(foreign)
    conn.execute("CREATE TABLE photos (id INTEGER)")
    conn.commit()
    conn.close()
    RunStore(foreign, on_warning=messages.append).close()
    assert "not a promptcli database (tables: photos)" in messages[1]
    assert len(aside_files(foreign)) == 1


# ---- score cache -----------------------------------------------------------------------------

def test_cache_key_is_canonical_and_sensitive():
    key = cache_key("sha256:abc", [1, 2, 3], [[7], [8, 9]], {"normalize": "tokens", "dtype": "float32"})
    assert len(key) == 64 and int(key, 16) >= 0
    assert key == cache_key("sha256:abc", (1, 2, 3), ([7], [8, 9]), {"dtype": "float32", "normalize": "tokens"})
    different = [cache_key("sha256:abd", [1, 2, 3], [[7], [8, 9]], {"normalize": "tokens", "dtype": "float32"}),
                 cache_key("sha256:abc", [1, 2, 4], [[7], [8, 9]], {"normalize": "tokens", "dtype": "float32"}),
                 cache_key("sha256:abc", [1, 2, 3], [[7, 8], [9]], {"normalize": "tokens", "dtype": "float32"}),
                 cache_key("sha256:abc", [1, 2, 3], [[7], [8, 9]], {"normalize": "none", "dtype": "float32"}),
                 cache_key("sha256:abc", "1 2 3", [[7], [8, 9]], {"normalize": "tokens", "dtype": "float32"})]
    assert len({key, *different}) == 6
    with pytest.raises(TypeError, match="cache key"):
        cache_key("m", object(), [], {})


def test_cache_key_accepts_tensors_exactly():
    torch = pytest.importorskip("torch")
    ids = torch.arange(2000)  # str() of this tensor elides the middle; tolist() does not
    assert cache_key("m", ids, [[1]], {}) == cache_key("m", list(range(2000)), [[1]], {})
    assert cache_key("m", ids, [[1]], {}) != cache_key("m", torch.cat([ids[:1000], ids[1001:], ids[:1]]), [[1]], {})


def test_cache_hits_misses_and_exact_values(tmp_path):
    values = {"a": [-0.6931471805599453, -1.0986122886681098, 1e-300],  # ln 2, ln 3, tiny
              "b": [-math.inf, 0.0, -5e-324],  # log 0, exact zero, the smallest subnormal
              "c": [0.1 + 0.2]}  # not a float32 value: float64 keeps it exactly
    with ScoreCache(tmp_path / "scores.sqlite") as cache:
        assert cache.stats == CacheStats()
        assert cache.get_many(["a", "b"]) == {}
        assert cache.stats == CacheStats(hits=0, misses=2, writes=0)
        cache.put_many(values)
        assert cache.stats.writes == 3
        got = cache.get_many(["a", "b", "c", "d", "a"])  # repeats count once
        assert got == values and all(type(v) is float for row in got.values() for v in row)
        assert cache.stats == CacheStats(hits=3, misses=3, writes=3, corrupt=0)
        cache.put_many({"c": [2.0, 3.0]})  # replaced, not appended
        assert cache.get_many(["c"]) == {"c": [2.0, 3.0]}
        cache.put_many({"n": [math.nan]})
        assert math.isnan(cache.get_many(["n"])["n"][0])
    with ScoreCache(tmp_path / "scores.sqlite") as cache:  # survives reopening; counters restart
        assert cache.get_many(["a"]) == {"a": values["a"]}
        assert cache.stats == CacheStats(hits=1)


def test_many_keys_at_once(tmp_path):
    items = {f"k{i}": [float(i), -float(i)] for i in range(1234)}  # more than one SELECT chunk
    with ScoreCache(tmp_path / "scores.sqlite") as cache:
        cache.put_many(items)
        assert cache.get_many(list(items) + ["missing"]) == items
        assert cache.stats.hits == 1234 and cache.stats.misses == 1


def flip_a_byte(path: Path, key: str) -> None:
    conn = sqlite3.connect(path)
    [blob] = conn.execute("SELECT value FROM scores WHERE key = ?", (key,)).fetchone()
    blob = bytearray(blob)
    blob[3] ^= 0x01
    conn.execute("UPDATE scores SET value = ? WHERE key = ?", (bytes(blob), key))
    conn.commit()
    conn.close()


def test_a_flipped_byte_is_a_miss_and_counted_corrupt(tmp_path):
    path = tmp_path / "scores.sqlite"
    with ScoreCache(path) as cache:
        cache.put_many({"good": [-0.5, -1.5], "bad": [-0.25, -2.5]})
    flip_a_byte(path, "bad")
    with ScoreCache(path) as cache:
        assert cache.get_many(["good", "bad"]) == {"good": [-0.5, -1.5]}
        assert cache.stats == CacheStats(hits=1, misses=1, corrupt=1)
        assert cache.get_many(["bad"]) == {}  # the row was deleted: a plain miss now
        assert cache.stats == CacheStats(hits=1, misses=2, corrupt=1)
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT key FROM scores").fetchall() == [("good",)]
    conn.close()


def test_a_value_moved_to_another_key_is_caught(tmp_path):
    path = tmp_path / "scores.sqlite"
    with ScoreCache(path) as cache:
        cache.put_many({"x": [1.0], "y": [2.0]})
    conn = sqlite3.connect(path)
    conn.execute("UPDATE scores SET (value, checksum) = (SELECT value, checksum FROM scores WHERE key = 'x')"
                 " WHERE key = 'y'")
    conn.commit()
    conn.close()
    with ScoreCache(path) as cache:
        assert cache.get_many(["x", "y"]) == {"x": [1.0]} and cache.stats.corrupt == 1


def test_an_exception_inside_put_many_writes_nothing(tmp_path):
    with ScoreCache(tmp_path / "scores.sqlite") as cache:
        cache.put_many({"old": [1.0]})
        with pytest.raises(ValueError):
            cache.put_many({"new1": [1.0], "new2": [2.0], "broken": ["not a number"], "new3": [3.0]})
        assert cache.get_many(["new1", "new2", "new3", "old"]) == {"old": [1.0]}
        assert cache.stats.writes == 1


CRASH = """
import os, sys
from promptcli.store.scores import ScoreCache

class Dies:
    def __float__(self):
        os._exit(3)  # the process dies mid-transaction: no rollback, no close

cache = ScoreCache(sys.argv[1])
cache.put_many({"committed": [1.0]})
cache.put_many({"a": [1.0], "b": [2.0], "c": [Dies()]})
"""


def test_a_crash_inside_put_many_leaves_the_last_commit(tmp_path):
    path = tmp_path / "scores.sqlite"
    done = subprocess.run([sys.executable, "-c", CRASH, str(path)], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 3, done.stderr
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # not corrupt: WAL recovery, no warning
        with ScoreCache(path) as cache:
            assert cache.get_many(["committed", "a", "b", "c"]) == {"committed": [1.0]}
