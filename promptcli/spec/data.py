"""Reading examples from JSONL / JSON / CSV / TSV, with checks that name file, line and field.

A bad row is an error that says where it is and what is wrong; with `skip_invalid` it is
skipped and counted instead, so a long run is never lost to one malformed line.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from ..errors import DataError
from .options import DataFormat as Format
from .selection import stratified_sample
from .template import RESERVED

FORMATS: dict[str, Format] = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv", ".tsv": "tsv"}


@dataclass(frozen=True)
class Example:
    """One usable data row."""

    index: int  # 0-based position among the file's rows: the stable id in predictions
    line: int  # 1-based line (JSONL/CSV/TSV) or item number (JSON), for messages
    fields: Mapping[str, Any]
    gold: str | None  # label name (after label_map), None for unlabelled data


@dataclass(frozen=True)
class Skipped:
    line: int
    reason: str


@dataclass
class Dataset:
    source: str
    examples: list[Example]
    labeled: bool
    sha256: str
    skipped: list[Skipped] = field(default_factory=list)


@dataclass(frozen=True)
class LabelSpace:
    """What a gold label may be: the verbalizer's labels, reached directly or through label_map."""

    labels: Sequence[str]
    label_map: Mapping[str, str]

    def resolve(self, raw: Any) -> str:
        """A label as written in the data: a label name, or a key of label_map; numbers compare as written
        in YAML, so `1.0` in the data finds `1` in label_map."""
        if isinstance(raw, float) and raw.is_integer():
            raw = int(raw)
        key = "true" if raw is True else "false" if raw is False else str(raw)
        if key in self.label_map:
            return self.label_map[key]
        if key in self.labels:
            return key
        hint = "add a label_map to the verbalizer" if not self.label_map else "check the verbalizer's label_map"
        raise ValueError(f"label {raw!r} is not in the verbalizer (labels: {', '.join(self.labels)}; {hint})")


class DuplicateKey(ValueError):
    def __init__(self, key: str):
        super().__init__(key)
        self.key = key


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """JSON keeps the last of two equal keys; a copy-paste slip would silently replace a field."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise DuplicateKey(key)
        out[key] = value
    return out


def detect_format(path: Path, override: str | None = None) -> Format:
    if override:
        if override not in FORMATS.values():
            raise DataError(f"unknown data format '{override}' (one of: jsonl, json, csv, tsv)", path=str(path))
        return override  # type: ignore[return-value]
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise DataError(f"cannot tell the format from the extension '{path.suffix}'", path=str(path),
                        hint="use .jsonl, .json, .csv or .tsv, or pass --data-format")
    return fmt


def _decode(raw: bytes, path: Path, line: int) -> str:
    try:
        return raw.decode("utf-8-sig" if line == 1 else "utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"not valid UTF-8 ({exc.reason} at byte {exc.start})", path=str(path), line=line) from None


def read_bytes(path: Path) -> bytes:
    if path.is_dir():
        raise DataError("this is a folder, not a data file", path=str(path), hint="pass a .jsonl, .json, .csv or .tsv file")
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise DataError("data file not found", path=str(path)) from None
    except OSError as exc:
        raise DataError(f"cannot read data file: {exc}", path=str(path)) from None


def iter_rows(path: Path, fmt: Format, data: bytes) -> Iterator[tuple[int, Any]]:
    """Yield (line, row) for each row; a malformed row is yielded as a DataError to raise or skip."""
    if fmt == "jsonl":
        for number, raw in enumerate(data.splitlines(), start=1):
            text = _decode(raw, path, number)
            if not text.strip():
                continue
            try:
                yield number, json.loads(text, object_pairs_hook=_unique_keys)
            except json.JSONDecodeError as exc:
                yield number, DataError(f"malformed JSON: {exc.msg} (column {exc.colno})", path=str(path), line=number)
            except DuplicateKey as exc:
                yield number, DataError(f"the key '{exc.key}' appears twice in this row", path=str(path),
                                        line=number, field=exc.key)
    elif fmt == "json":
        try:
            rows = json.loads(_decode(data, path, 1), object_pairs_hook=_unique_keys)
        except json.JSONDecodeError as exc:
            raise DataError(f"malformed JSON: {exc.msg}", path=str(path), line=exc.lineno, column=exc.colno) from None
        except DuplicateKey as exc:
            raise DataError(f"the key '{exc.key}' appears twice in an object", path=str(path), field=exc.key) from None
        if not isinstance(rows, list):
            raise DataError("a .json data file must hold a list of objects", path=str(path))
        yield from enumerate(rows, start=1)
    else:
        text = _decode(data, path, 1)
        reader = csv.DictReader(io.StringIO(text, newline=""), delimiter="\t" if fmt == "tsv" else ",")
        for row in reader:
            if None in row:  # more cells than header columns
                yield reader.line_num, DataError(f"{len(row) - 1 + len(row[None])} cells but the header has "
                                                 f"{len(row) - 1} columns", path=str(path), line=reader.line_num)
            else:
                yield reader.line_num, row


def check_row(row: Any, fields: Sequence[str], label_field: str | None, labels: LabelSpace | None
              ) -> tuple[dict[str, Any], str | None]:
    """Validate one parsed row; raises DataError (without location) on the first problem."""
    if not isinstance(row, dict):
        raise DataError(f"expected an object with fields, got {type(row).__name__}")
    for name in fields:
        if name not in row:
            present = ", ".join(sorted(map(str, row))) or "none"
            raise DataError(f"missing field (fields present: {present})", field=name)
        value = row[name]
        if value is None:
            raise DataError("the field is null", field=name)
        if isinstance(value, str):
            if not value.strip():
                raise DataError("empty text", field=name)
            reserved = [f"U+{ord(c):04X}" for c in RESERVED if c in value]
            if reserved:
                raise DataError(f"the text holds {', '.join(reserved)}, private-use characters promptcli reserves "
                                "for the answer slot and soft-prompt places; remove them", field=name)
    gold = None
    if label_field is not None:
        raw = row.get(label_field)
        if raw is None or raw == "":
            raise DataError("missing label (other rows of this file have one)", field=label_field)
        if labels is not None:
            try:
                gold = labels.resolve(raw)
            except ValueError as exc:
                raise DataError(str(exc), field=label_field) from None
        else:
            gold = str(raw)
    return row, gold


def load_dataset(source: str | Path | Sequence[Mapping[str, Any]], fields: Sequence[str], label_field: str,
                 labels: LabelSpace | None, *, skip_invalid: bool = False, limit: int | None = None,
                 data_format: str | None = None, require_labels: bool = False, rows: range | None = None,
                 subsample: int | None = None, subsample_from: int | None = None, seed: int = 0) -> Dataset:
    """Read and check the rows (`rows`: a range of row numbers; `subsample`: a seeded sample of that many,
    stratified by label, drawn from a first such sample of `subsample_from` rows when given, so that it
    lies within that sample; `limit`: the first that many). The data is labelled when any row carries
    `label_field` (then every row must), or when `require_labels` (the label field was named by the user:
    a field no row has is an error)."""
    if isinstance(source, (str, Path)):
        path = Path(source)
        content = read_bytes(path)
        fmt = detect_format(path, data_format)
        parsed = iter_rows(path, fmt, content)
        name, digest = str(path), hashlib.sha256(content).hexdigest()
    else:
        parsed = enumerate(source, start=1)
        name = "<rows>"
        digest = hashlib.sha256(json.dumps(list(source), sort_keys=True, default=str).encode()).hexdigest()
    numbered = [(index, line, row) for index, (line, row) in enumerate(parsed) if rows is None or index in rows]
    labeled = any(isinstance(row, dict) and row.get(label_field) not in (None, "") for _, _, row in numbered)
    if require_labels and not labeled:
        first = next((row for _, _, row in numbered if isinstance(row, dict)), {})
        raise DataError(f"no row has the label field '{label_field}' (fields of the first row: "
                        f"{', '.join(map(str, first)) or 'none'})", path=name, field=label_field,
                        hint="check --label-field, or the template's label_field")
    examples: list[Example] = []
    skipped: list[Skipped] = []
    for index, line, row in numbered:
        if limit is not None and subsample is None and len(examples) >= limit:
            break
        try:
            if isinstance(row, DataError):
                raise row
            values, gold = check_row(row, fields, label_field if labeled else None, labels)
        except DataError as exc:
            exc.path, exc.line = name, (exc.line or line)
            if not skip_invalid:
                exc.hint = exc.hint or "fix the row, or pass --skip-invalid to skip and count such rows"
                raise
            skipped.append(Skipped(line=exc.line, reason=f"{'field ' + repr(exc.field) + ': ' if exc.field else ''}"
                                                          f"{exc.message}"))
            continue
        examples.append(Example(index=index, line=line, fields=values, gold=gold))
    for n in (subsample_from, subsample) if subsample is not None else ():
        if n is not None:
            examples = stratified_sample(examples, [e.gold for e in examples], n, seed)
    if subsample is not None:
        examples = examples[:limit]
    if not examples:
        raise DataError("no usable rows" + (f" ({len(skipped)} skipped as invalid)" if skipped else ""), path=name)
    return Dataset(source=name, examples=examples, labeled=labeled, sha256=digest, skipped=skipped)

