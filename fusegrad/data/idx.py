"""The IDX file format of MNIST-style datasets, gzip-compressed or raw.

Layout: two zero bytes, a type code (0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64),
the number of dims, one big-endian uint32 per dim, then the values in C order, big-endian.
"""
from __future__ import annotations

import gzip
import math
import os
import struct
import zlib

import numpy as np

IDX_DTYPES: dict[int, np.dtype] = {0x08: np.dtype("u1"), 0x09: np.dtype("i1"), 0x0B: np.dtype(">i2"),
                                   0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
_GZIP_MAGIC = b"\x1f\x8b"


def parse_idx(buf: bytes, name: str = "<bytes>") -> np.ndarray:
    """Decode the bytes of an (uncompressed) IDX file; ValueError naming `name` if they are not a whole IDX file."""
    if len(buf) < 4:
        raise ValueError(f"{name}: not an IDX file: {len(buf)} bytes, too short for the 4-byte magic number")
    magic = buf[:4].hex()
    if buf[0] != 0 or buf[1] != 0:
        raise ValueError(f"{name}: not an IDX file: magic number 0x{magic} does not start with two zero bytes")
    code, ndim = buf[2], buf[3]
    if code not in IDX_DTYPES:
        raise ValueError(f"{name}: not an IDX file: magic number 0x{magic} has unknown type code 0x{code:02x} "
                         f"(known: {', '.join(f'0x{c:02x}' for c in IDX_DTYPES)})")
    if ndim == 0:
        raise ValueError(f"{name}: IDX magic number 0x{magic} declares 0 dims")
    header = 4 + 4 * ndim
    if len(buf) < header:
        raise ValueError(f"{name}: truncated IDX file: {len(buf)} bytes, but the header of {ndim} dims needs {header}")
    shape = struct.unpack(f">{ndim}I", buf[4:header])
    dtype = IDX_DTYPES[code]
    count = math.prod(shape)
    expected = header + count * dtype.itemsize
    if len(buf) != expected:
        problem = "truncated IDX file" if len(buf) < expected else "IDX file with trailing bytes"
        raise ValueError(f"{name}: {problem}: the header says shape {shape} of {dtype.name}, {expected} bytes in "
                         f"all, but there are {len(buf)}")
    arr = np.frombuffer(buf, dtype=dtype, count=count, offset=header).reshape(shape)
    return arr.astype(dtype.newbyteorder("=")) if dtype.itemsize > 1 else arr


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file, gzip-compressed (detected by its magic bytes, whatever the name) or raw.

    Raises ValueError naming the file when it is truncated, corrupt or not IDX; the result is read-only for uint8
    and int8 data (a view of the file's bytes).
    """
    path = os.fspath(path)
    with open(path, "rb") as f:
        buf = f.read()
    if buf[:2] == _GZIP_MAGIC:
        try:
            buf = gzip.decompress(buf)
        except (OSError, EOFError, zlib.error) as e:  # bad header or CRC, cut short, bad deflate data
            raise ValueError(f"{path}: corrupt or truncated gzip file: {e}") from e
    return parse_idx(buf, path)
