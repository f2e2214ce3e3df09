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
import functools
import hashlib
import json
import math
import mmap
import os
import shutil
import struct
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator

from .errors import ModelError
from .outputs import write_json
from .sqlitedb import store_home

MARKER = "promptcli_gguf.json"
NEEDED = ("gguf", "accelerate")  # transformers reads GGUF with gguf, and refuses to without accelerate


def model_cache_dir() -> Path:
    """Converted models: `$PROMPTCLI_MODEL_CACHE`, else `models/` under the promptcli home."""
    folder = os.environ.get("PROMPTCLI_MODEL_CACHE")
    return Path(folder).expanduser() if folder else store_home() / "models"


@dataclass(frozen=True)
class GgufSource:
    """What a converted folder came from: recorded in run.json and covered by the model fingerprint."""

    file: str
    sha256: str
    size: int
    architecture: str
    quantization: str  # the file type llama.cpp wrote, e.g. Q4_K_M


def gguf_file_of(name: str) -> Path | None:
    """The `.gguf` that `name` means: the file itself, or the only one in a folder without config.json."""
    path = Path(name).expanduser()
    if path.suffix.lower() == ".gguf":
        if not path.is_file():
            raise ModelError(f"GGUF file '{name}' does not exist")
        return path
    if path.is_dir() and not (path / "config.json").exists():
        found = sorted(path.glob("*.gguf"))
        if len(found) > 1:
            raise ModelError(f"'{name}' holds {len(found)} .gguf files ({', '.join(f.name for f in found)})",
                             hint="pass the one you mean: --model FOLDER/FILE.gguf")
        return found[0] if found else None
    return None


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 24):
            digest.update(block)
    return digest.hexdigest()


@functools.lru_cache(maxsize=16)
def _sha256_stamped(path: str, size: int, mtime_ns: int) -> str:
    return sha256_file(Path(path))


def file_sha256(path: Path) -> str:
    """A file's SHA-256, computed once per process for the same size and modification time."""
    stat = path.stat()
    return _sha256_stamped(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


def read_source(path: Path, sha256: str | None = None, origin: str | None = None) -> GgufSource:
    """Header facts of a GGUF file, checked: readable, complete, and of an architecture transformers loads."""
    header = _read_header(path)
    arch = header["architecture"]
    supported = supported_architectures()
    if supported and arch not in supported:
        raise ModelError(f"'{path}' is a GGUF of architecture '{arch}', which transformers cannot load",
                         hint="architectures it loads from GGUF: " + ", ".join(supported))
    size = path.stat().st_size
    if header["data_end"] > size:
        raise ModelError(f"'{path}' is truncated: its tensors need {header['data_end']:,} bytes, the file has "
                         f"{size:,}", hint="download or copy the file again")
    return GgufSource(file=origin or str(path.resolve()), sha256=sha256 or file_sha256(path), size=size,
                      architecture=arch, quantization=header["quantization"])


def _read_header(path: Path) -> dict:
    """Architecture, file type and where the tensor data ends, read from the header alone.

    Our own few lines: gguf's GGUFReader parses every vocabulary string (15 s for a 262k-token
    file), and transformers' header reader refuses some types its loader accepts (Q5_0)."""
    _require_gguf()
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

    try:
        with path.open("rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as blob:
            if blob[:4] != b"GGUF":
                raise ValueError("it does not start with the GGUF magic bytes")
            _version, tensor_count, kv_count = struct.unpack_from("<IQQ", blob, 4)
            pos, metadata = 24, {}
            for _ in range(kv_count):
                key, pos = _string(blob, pos)
                (value_type,) = struct.unpack_from("<I", blob, pos)
                metadata[key], pos = _value(blob, pos + 4, value_type)
            end = 0
            for _ in range(tensor_count):
                _name, pos = _string(blob, pos)
                (dims,) = struct.unpack_from("<I", blob, pos)
                shape = struct.unpack_from(f"<{dims}Q", blob, pos + 4)
                ggml_type, offset = struct.unpack_from("<IQ", blob, pos + 4 + 8 * dims)
                pos += 16 + 8 * dims
                block, block_bytes = GGML_QUANT_SIZES[GGMLQuantizationType(ggml_type)]
                end = max(end, offset + math.prod(shape) // block * block_bytes)
            alignment = metadata.get("general.alignment", 32)
            data_start = -(-pos // alignment) * alignment
    except (ValueError, KeyError, OSError, struct.error, UnicodeDecodeError) as exc:
        raise ModelError(f"'{path}' is not a readable GGUF file: {_first_line(exc)}",
                         hint="the file may be truncated or not a GGUF at all; copy it again") from None
    if "general.architecture" not in metadata:
        raise ModelError(f"'{path}' names no architecture (general.architecture) in its metadata")
    return {"architecture": metadata["general.architecture"], "data_end": data_start + end,
            "quantization": _file_type_name(metadata.get("general.file_type"))}


_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}


def _string(blob, pos: int) -> tuple[str, int]:
    (length,) = struct.unpack_from("<Q", blob, pos)
    if pos + 8 + length > len(blob):
        raise ValueError("the header ends early")
    return blob[pos + 8:pos + 8 + length].decode("utf-8"), pos + 8 + length


def _value(blob, pos: int, value_type: int) -> tuple[object, int]:
    """One metadata value; arrays are skipped (their length kept): only scalars are needed here."""
    if value_type in _SCALARS:
        return struct.unpack_from(_SCALARS[value_type], blob, pos)[0], pos + struct.calcsize(_SCALARS[value_type])
    if value_type == 8:
        return _string(blob, pos)
    if value_type == 9:
        element_type, count = struct.unpack_from("<IQ", blob, pos)
        pos += 12
        if element_type in _SCALARS:
            return count, pos + count * struct.calcsize(_SCALARS[element_type])
        for _ in range(count):
            _, pos = _value(blob, pos, element_type)
        return count, pos
    raise ValueError(f"unknown metadata value type {value_type}")


def _file_type_name(file_type: int | None) -> str:
    if file_type is None:
        return "unknown"
    try:
        from gguf import LlamaFileType

        return LlamaFileType(file_type).name.removeprefix("MOSTLY_")
    except (ImportError, ValueError):
        return f"file_type {file_type}"


@functools.lru_cache(maxsize=1)
def supported_architectures() -> list[str]:
    """GGUF architectures this transformers can load (its legacy table and its newer one)."""
    names: set[str] = set()
    try:
        from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES

        names |= set(GGUF_SUPPORTED_ARCHITECTURES)
    except ImportError:  # pragma: no cover
        pass
    try:
        from transformers.integrations.gguf.utils import GGUF_ARCHS

        names |= set(GGUF_ARCHS)
    except ImportError:  # pragma: no cover
        pass
    return sorted(names - {"general", "tokenizer"})


def entry_dir(sha256: str, stem: str) -> Path:
    return model_cache_dir() / f"{stem}-{sha256[:16]}"


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
    folder = entry_dir(sha256, stem)
    if folder.exists():
        if cached_entry(folder) is not None:
            return folder
        from .progress import warn

        warn(f"the converted model in {folder} is incomplete or damaged; converting it again")
        shutil.rmtree(folder, ignore_errors=True)
    return _convert(folder, stem, sha256, materialize, origin, progress)


def _convert(folder: Path, stem: str, sha256: str, materialize: Callable[[Path], Path], origin: str | None,
             progress: bool) -> Path:
    from .progress import STDERR, new_progress

    _require_gguf()
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
                                  "seconds": round(time.perf_counter() - started, 1), **_versions()})
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


def _require_gguf() -> None:
    import importlib.util

    missing = [name for name in NEEDED if importlib.util.find_spec(name) is None]
    if missing:
        raise ModelError(f"loading a .gguf model needs the {' and '.join(repr(m) for m in missing)} package"
                         f"{'s' if len(missing) > 1 else ''}, not installed here",
                         hint=f'pip install {" ".join(missing)}  (or: pip install "promptcli[gguf]")')


def _load_tokenizer(gguf: Path):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    except (OSError, ValueError, KeyError, NotImplementedError) as exc:
        raise ModelError(f"cannot convert the tokenizer of '{gguf}': {_first_line(exc)}") from None


def _load_model(gguf: Path):
    """Dequantized to float32 (exact for every GGUF type), detached from the GGUF quantizer so it saves."""
    import torch
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    try:
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    except (OSError, ValueError, KeyError, NotImplementedError, RuntimeError) as exc:
        raise ModelError(f"cannot convert the weights of '{gguf}': {_first_line(exc)}") from None
    model.hf_quantizer = None  # the weights are plain tensors now; the quantizer only blocks saving
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    return model


def _versions() -> dict:
    from importlib import metadata

    found = {}
    for package in ("transformers", "gguf"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "not installed"
    return {"versions": found}


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


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
