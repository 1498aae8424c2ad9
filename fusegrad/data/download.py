"""Fetch a file over HTTP(S), check its md5 and move it into place atomically; the dataset cache folder."""
from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from urllib.error import URLError
from urllib.request import Request, urlopen


def cache_dir(name: str) -> Path:
    """`$XDG_CACHE_HOME/fusegrad/datasets/<name>`, with `~/.cache` when XDG_CACHE_HOME is unset or not absolute."""
    base = os.environ.get("XDG_CACHE_HOME", "")
    root = Path(base) if os.path.isabs(base) else Path.home() / ".cache"
    return root / "fusegrad" / "datasets" / name


def fetch(mirrors: Sequence[str], filename: str, folder: str | os.PathLike, md5: str,
             timeout: float = 60.0) -> Path:
    """Download `filename` from the first mirror (a URL prefix) that answers into `folder`, checking its md5.

    The bytes go to a temporary file in `folder` that is renamed over the target only once the md5 matches, so a
    failed or interrupted download leaves nothing behind. A wrong md5 raises ValueError at once (no other mirror is
    tried: the published checksum is the contract); when no mirror answers, OSError lists each one's error.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / filename
    errors = []
    for prefix in mirrors:
        url = prefix + filename
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{filename}.", suffix=".part")
        try:
            digest = hashlib.md5()
            with os.fdopen(fd, "wb") as out, urlopen(Request(url, headers={"User-Agent": "fusegrad"}),
                                                     timeout=timeout) as response:
                while chunk := response.read(1 << 20):
                    digest.update(chunk)
                    out.write(chunk)
            if digest.hexdigest() != md5:
                raise ValueError(f"download of {url} has md5 {digest.hexdigest()}, expected {md5}; nothing was saved")
            os.replace(tmp, target)
            return target
        except (URLError, TimeoutError, ConnectionError) as e:
            errors.append(f"{url}: {e}")
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    raise OSError(f"could not download {filename}: " + "; ".join(errors))
