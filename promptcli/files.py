"""Writing files so that a crash leaves the old file or the new one, never half of one.

Every file promptcli writes (run.json, predictions, leaderboards, reports, soft prompts,
checkpoints) goes through here: the content is written beside the target and moved over it
with `os.replace`, which is atomic on POSIX and Windows file systems. A failed write (disk
full) removes its temporary file and raises a `RunError` that names the path.
"""
from __future__ import annotations

import json
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from .errors import RunError


def _tmp(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


@contextmanager
def _removed_on_failure(tmp: Path, target: Path) -> Iterator[None]:
    """A failed write (disk full, Ctrl-C) leaves no temporary file behind; an OSError names the target."""
    try:
        yield
    except OSError as exc:
        _remove(tmp)
        raise RunError(f"cannot write {target.name}: {exc.strerror or exc}", path=str(target)) from None
    except BaseException:
        _remove(tmp)
        raise


@contextmanager
def _written(path: Path) -> Iterator[Path]:
    """A temporary path to write; moved onto `path` when the block succeeds, removed when it fails."""
    tmp = _tmp(path)
    with _removed_on_failure(tmp, path):
        yield tmp
        os.replace(tmp, path)


def remove(path: Path) -> None:
    """Delete a file or a folder (no error when it is already gone)."""
    _remove(Path(path))


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def write_text(path: Path, text: str) -> None:
    """Replace `path` with `text` (UTF-8), atomically."""
    with _written(Path(path)) as tmp:
        with tmp.open("w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())


def write_json(path: Path, data: Any) -> None:
    """Replace `path` with `data` as indented JSON, atomically."""
    write_text(path, json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")


def write_with(path: Path, write: Callable[[Path], None]) -> None:
    """Replace `path` with what `write(tmp)` writes there (e.g. `safetensors.torch.save_file`), atomically."""
    with _written(Path(path)) as tmp:
        write(tmp)


def replace_folder(folder: Path, fill: Callable[[Path], None]) -> None:
    """Replace a whole folder with what `fill(tmp)` writes into a fresh one: readers see the old
    folder or the new one (the swap is two renames; a crash between them leaves `<name>.old`)."""
    folder = Path(folder)
    tmp = _tmp(folder)
    _remove(tmp)
    tmp.mkdir(parents=True)
    with _removed_on_failure(tmp, folder):
        fill(tmp)
    old = folder.with_name(folder.name + ".old")
    if folder.exists():
        _remove(old)
        os.replace(folder, old)
    os.replace(tmp, folder)
    _remove(old)


def read_json(path: Path) -> Any:
    """A JSON file promptcli wrote; a missing or damaged one is a RunError naming it."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunError(f"{path.name} not found in {path.parent}", path=str(path)) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        line = getattr(exc, "lineno", None)
        raise RunError(f"{path.name} is not valid JSON: {getattr(exc, 'msg', exc)}", path=str(path),
                       line=line) from None
    except OSError as exc:
        raise RunError(f"cannot read {path.name}: {exc.strerror or exc}", path=str(path)) from None
