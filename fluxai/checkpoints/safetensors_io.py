"""Reading and writing the safetensors format directly.

Reading memory-maps the file privately (copy-on-write) and hands out zero-copy tensor views, so a
model assigned from them costs no second copy; pages of tensors that had to be converted are
handed back to the kernel. Writing streams one tensor at a time into a temporary file that is
renamed into place, so a failure never leaves half a checkpoint and saving never stages the
whole model twice.

Format (public spec): 8-byte little-endian header length, a JSON header mapping each name to
{dtype, shape, data_offsets} plus optional "__metadata__" (str -> str), then the raw bytes.
"""

from __future__ import annotations

import json
import mmap
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from fluxai.atomic import atomic_path
from fluxai.checkpoints.errors import CheckpointError

DTYPES: dict[str, torch.dtype] = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
    "U8": torch.uint8, "BOOL": torch.bool,
}
DTYPE_NAMES = {v: k for k, v in DTYPES.items()}
FP8_DTYPES = (torch.float8_e4m3fn, torch.float8_e5m2)
_MAX_HEADER = 100 * 1024 * 1024


@dataclass(frozen=True)
class Entry:
    dtype: torch.dtype
    shape: tuple[int, ...]
    start: int  # absolute byte offsets in the file
    end: int

    @property
    def numel(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n


def _itemsize(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


class SafetensorsFile:
    """The header of one .safetensors file, validated, with lazy zero-copy access to tensors."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.entries, self.metadata = _read_header(self.path)
        self._file = None
        self._map: mmap.mmap | None = None

    def names(self) -> list[str]:
        return list(self.entries)

    def _mapped(self) -> mmap.mmap:
        if self._map is None:
            self._file = open(self.path, "rb")  # noqa: SIM115 - lives as long as the mapping
            # ACCESS_COPY: a private mapping, so tensors are writable without touching the file.
            self._map = mmap.mmap(self._file.fileno(), 0, access=mmap.ACCESS_COPY)
        return self._map

    def tensor(self, name: str) -> Tensor:
        """A view of the tensor's bytes in the mapping (a copy only if they are misaligned)."""
        e = self.entries[name]
        if e.numel == 0:
            return torch.empty(e.shape, dtype=e.dtype)
        t = torch.frombuffer(self._mapped(), dtype=e.dtype, count=e.numel, offset=e.start)
        if e.start % _itemsize(e.dtype):
            t = t.clone()
        return t.view(e.shape)

    def release(self, name: str) -> None:
        """Drop the resident pages of a tensor whose bytes were copied elsewhere (dtype change,
        fusion), so reading a file in another dtype does not hold the file and the model."""
        if self._map is None:
            return
        e = self.entries[name]
        page = mmap.PAGESIZE
        start = -(-e.start // page) * page
        end = e.end // page * page
        if end > start:
            self._map.madvise(mmap.MADV_DONTNEED, start, end - start)


def _read_header(path: Path) -> tuple[dict[str, Entry], dict[str, str]]:
    size = path.stat().st_size
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) < 8:
            raise CheckpointError(f"{path} is not a safetensors file (only {size} bytes)")
        (n,) = struct.unpack("<Q", raw)
        if n > min(size - 8, _MAX_HEADER):
            raise CheckpointError(f"{path} is not a safetensors file (bad header length)")
        try:
            header = json.loads(f.read(n))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise CheckpointError(f"{path} is not a safetensors file (unreadable header)") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path} is not a safetensors file (header is not a table)")
    metadata = header.pop("__metadata__", None) or {}
    base = 8 + n
    entries: dict[str, Entry] = {}
    for name, info in header.items():
        try:
            dtype = DTYPES[info["dtype"]]
            shape = tuple(int(s) for s in info["shape"])
            begin, end = (int(o) for o in info["data_offsets"])
        except (KeyError, TypeError, ValueError):
            raise CheckpointError(
                f"{path}: tensor {name} has an invalid header entry {info!r}") from None
        entry = Entry(dtype, shape, base + begin, base + end)
        if end - begin != entry.numel * _itemsize(dtype):
            raise CheckpointError(f"{path}: tensor {name} has {end - begin} bytes for shape "
                                  f"{list(shape)} {info['dtype']}")
        entries[name] = entry
    for name, e in sorted(entries.items(), key=lambda kv: kv[1].end):
        if e.end > size:
            raise CheckpointError(f"{path} is truncated: tensor {name} ends at byte {e.end} "
                                  f"but the file has {size}")
    return entries, {str(k): str(v) for k, v in metadata.items()}


TensorFn = Callable[[], Tensor]


def write_safetensors(path: str | Path, shapes: dict[str, tuple[tuple[int, ...], torch.dtype]],
                      tensors: Iterable[tuple[str, TensorFn]],
                      metadata: dict[str, str] | None = None) -> None:
    """Write tensors whose shapes and dtypes are declared up front, producing each on demand.

    `tensors` yields (name, function returning the tensor) in the order of `shapes`; each is
    produced, written and dropped before the next, and the file appears only when complete.
    """
    path = Path(path)
    header: dict[str, object] = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    offset = 0
    for name, (shape, dtype) in shapes.items():
        nbytes = _itemsize(dtype)
        for s in shape:
            nbytes *= s
        header[name] = {"dtype": DTYPE_NAMES[dtype], "shape": list(shape),
                        "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)  # the spec pads the header so data starts 8-byte aligned
    with atomic_path(path) as tmp, tmp.open("wb") as f:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        for name, make in tensors:
            shape, dtype = shapes[name]
            t = make().detach().to("cpu", dtype).contiguous()
            if tuple(t.shape) != tuple(shape):
                raise CheckpointError(f"tensor {name} has shape {list(t.shape)}, "
                                      f"declared {list(shape)}")
            f.write(memoryview(t.reshape(-1).view(torch.uint8).numpy()))
