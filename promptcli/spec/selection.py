"""Which rows of a data file a run reads: a range of rows, then a seeded sample, then the first N.

`--limit N` keeps the first rows, which are often not representative (SST-2 dev: 82% on its first
100 rows against 75% on all 872); `--subsample N` draws N rows with a seed, stratified by gold label
when the data is labelled (each label keeps its share), and keeps them in file order.
"""
from __future__ import annotations

import random
import re
from collections import defaultdict
from typing import Sequence, TypeVar

ROWS = re.compile(r"(\d*):(\d*)")

T = TypeVar("T")


def row_range(text: str | None) -> range | None:
    """'200:300' → rows 200 to 299 (0-based, end excluded); ':100' and '200:' leave a side open."""
    if text is None:
        return None
    found = ROWS.fullmatch(text.strip())
    if not found:
        raise ValueError("is not a row range like 200:300")
    start, end = int(found.group(1) or 0), int(found.group(2)) if found.group(2) else 2**62
    if end <= start:
        raise ValueError("is an empty row range")
    return range(start, end)


def stratified_sample(items: Sequence[T], labels: Sequence[str | None], n: int, seed: int) -> list[T]:
    """n items drawn with `random.Random(seed)`: per label in proportion to its count (largest remainders
    first), uniformly when there are no labels; returned in their original order."""
    if n >= len(items):
        return list(items)
    groups: dict[str | None, list[int]] = defaultdict(list)
    for i, label in enumerate(labels):
        groups[label].append(i)
    shares = {label: n * len(members) / len(items) for label, members in groups.items()}
    quota = {label: int(share) for label, share in shares.items()}
    leftover = n - sum(quota.values())
    for label in sorted(shares, key=lambda lb: (-(shares[lb] - quota[lb]), str(lb)))[:leftover]:
        quota[label] += 1
    rng = random.Random(seed)
    chosen = [i for label in sorted(groups, key=str) for i in rng.sample(groups[label], quota[label])]
    return [items[i] for i in sorted(chosen)]
