"""GGUF files as ordinary model folders: converted once, then read from a cache.

transformers loads a `.gguf` by dequantizing every tensor and rebuilding the tokenizer from the
file's metadata: about a minute for a 270M model with a 262k-token vocabulary. promptcli does that
once, saves the result as a safetensors folder under the model cache (keyed by the file's SHA-256),
and every later load reads that folder in seconds. The rest of promptcli only ever sees a folder.

A cache entry is complete only when its marker (`promptcli_gguf.json`, written last, holding each
file's size and SHA-256) matches the files; anything else is removed and converted again.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable, Iterator

from ..errors import ModelError
from ..files import write_json
from ..store.sqlite import store_home
from ..versions import versions
from .gguf_file import file_sha256, first_line, read_source, require_gguf, sha256_file

MARKER = "promptcli_gguf.json"


def model_cache_dir() -> Path:
    """Converted models: `$PROMPTCLI_MODEL_CACHE`, else `models/` under the promptcli home."""
    folder = os.environ.get("PROMPTCLI_MODEL_CACHE")
    return Path(folder).expanduser() if folder else store_home() / "models"


def entry_dir(sha256: str, stem: str) -> Path:
    """Where a conversion is written; the name only helps a reader, the hash is the key."""
    return model_cache_dir() / f"{stem}-{sha256[:16]}"


def entries_of(sha256: str) -> list[Path]:
    """Every cache folder of the GGUF with this hash, whatever name it was converted under
    (`--model gemma-3-270m` and the same file passed as a path share one conversion)."""
    root = model_cache_dir()
    if not root.is_dir():
        return []
    return sorted(p for p in root.glob(f"*-{sha256[:16]}") if p.is_dir() and not p.name.startswith("."))


def cached_entry(folder: Path) -> dict | None:
    """The marker of a complete, undamaged entry; None for a missing, half-written or damaged one."""
    try:
        marker = json.loads((folder / MARKER).read_text(encoding="utf-8"))
        for name, facts in marker["files"].items():
            file = folder / name
            if file.stat().st_size != facts["size"] or sha256_file(file) != facts["sha256"]:
                return None
        return marker
    except (OSError, ValueError, KeyError, TypeError):
        return None


def converted(stem: str, sha256: str, materialize: Callable[[Path], Path], *, origin: str | None = None,
              progress: bool = True) -> Path:
    """The converted folder of the GGUF whose content hash is `sha256`, converting it first when needed.

    `materialize(tmpdir)` returns the .gguf path (a package may have to assemble it first);
    `origin` is what run.json names as its file (default: that path)."""
    for folder in entries_of(sha256):
        if cached_entry(folder) is not None:
            return folder
        from ..progress import warn

        warn(f"the converted model in {folder} is incomplete or damaged; converting it again")
        shutil.rmtree(folder, ignore_errors=True)
    return _convert(entry_dir(sha256, stem), stem, sha256, materialize, origin, progress)


def _convert(folder: Path, stem: str, sha256: str, materialize: Callable[[Path], Path], origin: str | None,
             progress: bool) -> Path:
    from ..progress import STDERR, new_progress

    require_gguf()
    tmp = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    started = time.perf_counter()
    try:
        with new_progress() if progress else _NoProgress() as bar:
            task = bar.add_task(f"{stem}: reading the GGUF", total=None, unit="tensors")
            gguf = materialize(tmp)
            source = read_source(gguf, sha256, origin)
            bar.update(task, description=f"{stem}: converting the tokenizer")
            tokenizer = _load_tokenizer(gguf)
            bar.update(task, description=f"{stem}: dequantizing the weights")
            with _tensor_progress(bar, task):
                model = _load_model(gguf)
            bar.update(task, description=f"{stem}: saving as safetensors")
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            del model
            if gguf.parent == tmp:  # assembled for the conversion only
                gguf.unlink()
        files = {f.name: {"size": f.stat().st_size, "sha256": sha256_file(f)} for f in sorted(tmp.iterdir())}
        write_json(tmp / MARKER, {"gguf": asdict(source), "files": files, "name": stem,
                                  "seconds": round(time.perf_counter() - started, 1), "versions": versions()})
        try:
            os.rename(tmp, folder)
        except OSError:  # another process finished the same conversion first: keep its folder
            shutil.rmtree(tmp, ignore_errors=True)
            if cached_entry(folder) is None:
                raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if progress:
        STDERR.print(f"converted {stem} once in {time.perf_counter() - started:.0f} s (later runs load the cached "
                     f"folder): {folder}", highlight=False)
    return folder


@contextlib.contextmanager
def _tensor_progress(bar, task) -> Iterator[None]:
    """transformers counts dequantized tensors with a plain tqdm bar: count them on ours instead."""
    module = sys.modules.get("transformers.modeling_gguf_pytorch_utils")
    if module is None:
        import transformers.modeling_gguf_pytorch_utils as module
    original = getattr(module, "tqdm", None)
    if original is None:  # pragma: no cover - another transformers layout
        yield
        return

    def counted(iterable, *args, **kwargs):
        items = list(iterable)
        bar.update(task, total=len(items), completed=0)
        for item in items:
            yield item
            bar.advance(task)

    module.tqdm = counted
    try:
        yield
    finally:
        module.tqdm = original


class _NoProgress:
    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        return None

    def add_task(self, *args, **kwargs) -> int:
        return 0

    def update(self, *args, **kwargs) -> None:
        return None

    def advance(self, *args) -> None:
        return None


def _load_tokenizer(gguf: Path):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    except (OSError, ValueError, KeyError, NotImplementedError) as exc:
        raise ModelError(f"cannot convert the tokenizer of '{gguf}': {first_line(exc)}") from None


def _load_model(gguf: Path):
    """Dequantized to float32 (exact for every GGUF type), detached from the GGUF quantizer so it saves."""
    import torch
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    try:
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    except (OSError, ValueError, KeyError, NotImplementedError, RuntimeError) as exc:
        raise ModelError(f"cannot convert the weights of '{gguf}': {first_line(exc)}") from None
    model.hf_quantizer = None  # the weights are plain tensors now; the quantizer only blocks saving
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    return model


def resolve_file(path: Path, *, progress: bool = True) -> tuple[Path, dict | None]:
    """A user's .gguf → (converted folder, its source facts)."""
    folder = converted(path.stem, file_sha256(path), lambda _tmp: path, progress=progress)
    return folder, source_of(folder)


def source_of(folder: Path) -> dict | None:
    """The GGUF facts recorded in a converted folder (None for an ordinary model folder)."""
    try:
        return json.loads((folder / MARKER).read_text(encoding="utf-8"))["gguf"]
    except (OSError, ValueError, KeyError):
        return None


def cache_entries() -> list[dict]:
    """Every converted model in the cache, with its size on disk and whether it is complete."""
    root = model_cache_dir()
    if not root.is_dir():
        return []
    entries = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
        marker = None if folder.name.startswith(".") else _marker(folder)
        entries.append({"folder": str(folder), "name": (marker or {}).get("name", folder.name),
                        "bytes": size, "complete": marker is not None,
                        "gguf": (marker or {}).get("gguf")})
    return entries


def _marker(folder: Path) -> dict | None:
    """The marker as written (sizes checked, contents not: listing the cache should be quick)."""
    try:
        marker = json.loads((folder / MARKER).read_text(encoding="utf-8"))
        ok = all((folder / n).stat().st_size == f["size"] for n, f in marker["files"].items())
        return marker if ok else None
    except (OSError, ValueError, KeyError, TypeError):
        return None
