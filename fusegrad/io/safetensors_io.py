"""`fg.save` / `fg.load`: checkpoints as safetensors files, readable by torch, never pickled.

Tensors are stored as safetensors entries named by their dotted path, so `fg.save(model.state_dict(), p)` writes the
same keys as `safetensors.torch.save_file(torch_model.state_dict(), p)`, and either file loads into either model.
Everything that is not a tensor (an optimizer's nested dicts, int keys, tuples, numbers, an epoch counter) is kept as
JSON in the file's `__metadata__`, with a CRC-32 over that structure and every tensor's bytes, so `load` rebuilds the
saved object exactly or says the file is damaged.
"""
from __future__ import annotations

import errno
import json
import os
import zlib
from typing import Any

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors import numpy as st_numpy

import fusegrad as fg

from .atomic import atomic_path
from .tree import flatten, unflatten

STRUCTURE_KEY = "fusegrad"  # metadata entry holding the JSON structure of a non-tensor-only object
CHECKSUM_KEY = "fusegrad.crc32"
FORMAT_VERSION = 1
# safetensors dtype codes of the dtypes fusegrad has (bfloat16, int8, ... have no fusegrad twin)
_CODES = {np.dtype(np.float16): "F16", np.dtype(np.float32): "F32", np.dtype(np.float64): "F64",
          np.dtype(np.int32): "I32", np.dtype(np.int64): "I64", np.dtype(np.uint8): "U8", np.dtype(np.bool_): "BOOL"}
_SUPPORTED = set(_CODES.values())


class CheckpointError(ValueError):
    """A file that is not a readable fusegrad/safetensors checkpoint: truncated, corrupt, or another format."""


def save(obj: Any, path: str | os.PathLike[str]) -> None:
    """Write `obj` (a Tensor, or dicts/lists/tuples of Tensors and None/bool/int/float/str) to `path` as safetensors.

    A flat `{name: Tensor}` dict such as `model.state_dict()` is stored under exactly its own key names, so
    `torch_model.load_state_dict(safetensors.torch.load_file(path))` works on the equivalent torch model. The write is
    atomic: a temporary file in the same directory is fsynced and renamed over `path`, so a failure part-way leaves
    any previous file intact. Raises TypeError for any other value (nothing is pickled).
    """
    tree, tensors = flatten(obj)
    arrays = _to_numpy(tensors)
    structure = json.dumps({"version": FORMAT_VERSION, "tree": tree}, allow_nan=False, separators=(",", ":"))
    metadata = {STRUCTURE_KEY: structure, CHECKSUM_KEY: _checksum(structure, arrays)}
    with atomic_path(path) as tmp:
        st_numpy.save_file(arrays, tmp, metadata=metadata)


def load(path: str | os.PathLike[str], device: str | None = None, *, map_location: str | None = None,
         weights_only: bool | None = None) -> Any:
    """Read a file written by `save` (the saved object, rebuilt exactly) or any safetensors file, e.g. one written
    by `safetensors.torch.save_file` (a `{name: Tensor}` dict). Tensors are created on `device` (default device when
    None). Raises FileNotFoundError for a missing file and ValueError (`CheckpointError`), naming the file, for a
    truncated, corrupt or non-safetensors file or one holding a dtype fusegrad does not have.

    `torch.load`'s keywords work, so `model.load_state_dict(torch.load(path, map_location=device,
    weights_only=True))` ports unchanged: `map_location` (a device name or `fg.device`) is another spelling of
    `device`; `weights_only` is accepted and changes nothing, since a fusegrad file holds only tensors and JSON
    and is never unpickled, whatever its value. A file written by `torch.save` (a pickle) is not readable here.
    """
    if map_location is not None:
        if not isinstance(map_location, str):
            raise TypeError(f"load: map_location must be a device name or fusegrad.device, got "
                            f"{type(map_location).__name__} (fusegrad checkpoints have no storage locations to remap)")
        map_location = fg.device(map_location)
        if device is not None and fg.device(device) != map_location:
            raise ValueError(f"load: device={device!r} and map_location={map_location!r} disagree")
        device = map_location
    name = os.fspath(path)
    metadata, arrays = _read(name)
    if STRUCTURE_KEY not in metadata and CHECKSUM_KEY not in metadata:
        return {key: _to_tensor(a, device) for key, a in arrays.items()}  # a plain safetensors file (torch, HF, ...)
    structure = metadata.get(STRUCTURE_KEY)
    if structure is None or metadata.get(CHECKSUM_KEY) != _checksum(structure, arrays):
        raise CheckpointError(f"checkpoint {name!r} is corrupt: its checksum does not match its contents")
    try:
        header = json.loads(structure)
        if not isinstance(header, dict) or header.get("version") != FORMAT_VERSION or "tree" not in header:
            raise ValueError(f"unknown checkpoint format version {str(header)[:40]!r}")
        return unflatten(header["tree"], {key: _to_tensor(a, device) for key, a in arrays.items()})
    except ValueError as e:  # json.JSONDecodeError is a ValueError
        raise CheckpointError(f"checkpoint {name!r} has an unreadable structure: {e}") from e


def _read(name: str) -> tuple[dict[str, str], dict[str, np.ndarray]]:
    """The metadata and arrays of a safetensors file, with the library's errors turned into ones naming the file."""
    if not os.path.exists(name):
        raise FileNotFoundError(errno.ENOENT, "no such checkpoint file", name)
    if os.path.isdir(name):
        raise IsADirectoryError(errno.EISDIR, "a checkpoint must be a file, not a directory", name)
    try:
        with safe_open(name, framework="numpy") as f:
            metadata = f.metadata() or {}
            arrays = {}
            for key in f.keys():
                code = f.get_slice(key).get_dtype()
                if code not in _SUPPORTED:
                    raise CheckpointError(f"checkpoint {name!r}: tensor {key!r} has dtype {code}, which fusegrad "
                                          f"does not support (supported: {', '.join(sorted(_SUPPORTED))})")
                arrays[key] = f.get_tensor(key)
    except SafetensorError as e:
        raise CheckpointError(f"{name!r} is not a valid safetensors file ({e})") from e
    except (FileNotFoundError, PermissionError, IsADirectoryError) as e:
        raise type(e)(e.errno, f"cannot read checkpoint: {e.strerror or e}", name) from e
    except OSError as e:  # the library's OS errors (e.g. a device file) do not say which file
        raise CheckpointError(f"cannot read checkpoint {name!r}: {e}") from e
    return metadata, arrays


def _to_numpy(tensors: dict[str, fg.Tensor]) -> dict[str, np.ndarray]:
    """Compute every tensor (one realize per device) and copy it to a C-contiguous host array."""
    by_device: dict[str, list[fg.Tensor]] = {}
    for t in tensors.values():
        by_device.setdefault(t.device, []).append(t)
    for group in by_device.values():
        fg.realize(*group)
    # np.require, not np.ascontiguousarray: the latter turns 0-d arrays into shape (1,)
    return {name: np.require(t.numpy(), requirements="C") for name, t in tensors.items()}


def _to_tensor(a: np.ndarray, device: str | None) -> fg.Tensor:
    return fg.tensor(a, dtype=a.dtype, device=device)


def _checksum(structure: str, arrays: dict[str, np.ndarray]) -> str:
    """CRC-32 of the structure and of every entry's name, dtype, shape and little-endian bytes, in name order."""
    crc = zlib.crc32(structure.encode())
    for key in sorted(arrays):
        a = arrays[key]
        code = _CODES.get(a.dtype.newbyteorder("="), a.dtype.str)
        crc = zlib.crc32(f"\0{key}\0{code}\0{a.shape}\0".encode(), crc)
        le = a.astype(a.dtype.newbyteorder("<"), copy=False) if a.dtype.byteorder == ">" else a
        crc = zlib.crc32(np.ascontiguousarray(le).reshape(-1).view(np.uint8), crc)
    return f"{crc:08x}"
