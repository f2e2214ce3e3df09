"""What a GGUF file is, read from its header alone: architecture, quantisation, completeness.

Checked before the slow conversion, so a truncated file or an architecture transformers cannot
load is a clear error at once.
"""
from __future__ import annotations

import functools
import hashlib
import math
import mmap
import struct
from dataclasses import dataclass
from pathlib import Path

from ..errors import ModelError

NEEDED = ("gguf", "accelerate")  # transformers reads GGUF with gguf, and refuses to without accelerate


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
    require_gguf()
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
        raise ModelError(f"'{path}' is not a readable GGUF file: {first_line(exc)}",
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


def require_gguf() -> None:
    import importlib.util

    missing = [name for name in NEEDED if importlib.util.find_spec(name) is None]
    if missing:
        raise ModelError(f"loading a .gguf model needs the {' and '.join(repr(m) for m in missing)} package"
                         f"{'s' if len(missing) > 1 else ''}, not installed here",
                         hint=f'pip install {" ".join(missing)}  (or: pip install "promptcli[gguf]")')


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
