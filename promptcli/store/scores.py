"""The score cache: label log-probs keyed by everything that decides them, in SQLite.

A sweep scores the same inputs again and again (the same template under several
verbalizers' aggregations, a rerun after a crash); the cache makes that free. A key is the
sha256 of a canonical JSON of the model fingerprint, the exact model input, the label token
ids and the scoring options, so any change to one of them is a miss, never a stale hit.
Each value carries a checksum checked on every read: a row that fails it is deleted and
counted as `corrupt` and as a miss, never used. Opening and crash safety: `promptcli.store.sqlite`.
"""
from __future__ import annotations

import hashlib
import json
import os
import struct
import zlib
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Mapping, Sequence

from .sqlite import SQLiteFile

_KEY_VERSION = "promptcli-score-v1"  # part of every key: changing what a score means changes it
_CHUNK = 500  # keys per SELECT, below SQLite's limit on bound variables


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):  # tensors, numpy arrays: exact, unlike str() which elides
        return value.tolist()
    raise TypeError(f"cannot use a {type(value).__name__} in a cache key; pass lists, strings and numbers")


def cache_key(model_fingerprint: str, model_input: Any, label_tokens: Any, options: Mapping[str, Any]) -> str:
    """sha256 hex of a canonical JSON of everything that decides the label log-probs.

    `model_input` is the exact input (token ids as a list, or text); `label_tokens` the label
    words' token ids; `options` the scoring options (normalisation, dtype, …). Keys are
    sorted and floats written in their shortest exact form, so equal inputs give equal keys.
    """
    payload = [_KEY_VERSION, model_fingerprint, model_input, label_tokens, dict(options)]
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False,
                      default=_jsonable)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _checksum(key: str, blob: bytes) -> int:
    # The key is in the checksum too, so a value copied onto another key is also caught.
    return zlib.crc32(blob, zlib.crc32(key.encode("utf-8")))


@dataclass(frozen=True)
class CacheStats:
    hits: int = 0
    misses: int = 0
    writes: int = 0
    corrupt: int = 0  # rows whose checksum failed; each was deleted and counted as a miss


class ScoreCache(SQLiteFile):
    """key → label log-probs, stored as little-endian float64.

    float64 because the scorers hand back Python floats: a cached value is then bit-identical
    to a computed one (−inf and NaN included), so a run is the same with or without the cache.
    """

    SCHEMA = "promptcli-scores"
    SYNCHRONOUS = "NORMAL"  # a power cut may lose the last writes of a cache, never corrupt it
    TABLES = ("CREATE TABLE scores (key TEXT PRIMARY KEY, value BLOB NOT NULL, checksum INTEGER NOT NULL)"
              " WITHOUT ROWID",)

    def __init__(self, path: str | os.PathLike, **kwargs: Any):
        super().__init__(path, **kwargs)
        self._hits = self._misses = self._writes = self._corrupt = 0

    @property
    def stats(self) -> CacheStats:
        return CacheStats(self._hits, self._misses, self._writes, self._corrupt)

    def get_many(self, keys: Iterable[str]) -> dict[str, list[float]]:
        """The cached values of those keys that are present and intact."""
        wanted = list(dict.fromkeys(keys))
        found: dict[str, list[float]] = {}
        bad: list[str] = []
        with self._sqlite_errors():
            for start in range(0, len(wanted), _CHUNK):
                chunk = wanted[start:start + _CHUNK]
                rows = self._conn.execute(
                    f"SELECT key, value, checksum FROM scores WHERE key IN ({','.join('?' * len(chunk))})", chunk)
                for key, blob, checksum in rows:
                    blob = bytes(blob)
                    if len(blob) % 8 or _checksum(key, blob) != checksum:
                        bad.append(key)
                    else:
                        found[key] = list(struct.unpack(f"<{len(blob) // 8}d", blob))
            if bad:
                with self._transaction() as conn:
                    conn.executemany("DELETE FROM scores WHERE key = ?", [(k,) for k in bad])
        self._hits += len(found)
        self._misses += len(wanted) - len(found)
        self._corrupt += len(bad)
        return found

    def put_many(self, items: Mapping[str, Sequence[float]]) -> None:
        """Store all items in one transaction: an error part-way writes none of them."""
        def rows() -> Iterator[tuple[str, bytes, int]]:
            for key, values in items.items():
                blob = struct.pack(f"<{len(values)}d", *(float(v) for v in values))
                yield key, blob, _checksum(key, blob)

        with self._sqlite_errors(), self._transaction() as conn:
            conn.executemany("INSERT OR REPLACE INTO scores (key, value, checksum) VALUES (?, ?, ?)", rows())
        self._writes += len(items)


def open_cache(cache: bool | str | os.PathLike | None) -> ScoreCache | None:
    """True: the default score cache; a path: that file; False/None: no cache."""
    if not cache:
        return None
    from ..progress import warn
    from .sqlite import default_cache_path

    return ScoreCache(default_cache_path() if cache is True else cache, on_warning=warn)
