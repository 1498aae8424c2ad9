"""Atomic file replacement: write beside the target, fsync, rename over it; readers see old or new, never half."""
from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from collections.abc import Iterator


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[str]:
    """Yield a fresh temporary path in `path`'s directory; when the block succeeds its file is fsynced and renamed
    over `path` (and the directory fsynced). When the block (or the sync, or the rename) fails, the temporary file is
    removed and any previous file at `path` is left untouched. Symlinks are written through and an existing file's
    permissions are kept, like `open(path, 'w')`.
    """
    target = os.path.realpath(os.fspath(path))
    directory = os.path.dirname(target)
    if os.path.isdir(target):
        raise IsADirectoryError(errno.EISDIR, "cannot save a checkpoint over a directory", os.fspath(path))
    if not os.path.isdir(directory):
        raise FileNotFoundError(errno.ENOENT, "the checkpoint's directory does not exist", directory)
    tmp, fd = _create_temp(directory, os.path.basename(target))
    try:
        # an overwrite keeps the old file's permissions (like open(path, "w")); a new file gets what the umask gave
        # the fresh temporary file, since writers that rename their own temp files over ours leave it 0600
        mode = stat.S_IMODE(os.stat(target).st_mode if os.path.exists(target) else os.fstat(fd).st_mode)
    finally:
        os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, mode)
        fd = os.open(tmp, os.O_RDWR)
        try:
            os.fsync(fd)  # the data must be on disk before the rename makes it the file others read
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_directory(directory)


def _create_temp(directory: str, base: str) -> tuple[str, int]:
    """A new hidden file next to the target, created exclusively with the usual umask-filtered permissions
    (unlike tempfile.mkstemp's 0600, which the renamed checkpoint would keep)."""
    for _ in range(100):
        tmp = os.path.join(directory, f".{base}.{secrets.token_hex(6)}.tmp")
        try:
            return tmp, os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "could not create a temporary file for the checkpoint", directory)


def _fsync_directory(directory: str) -> None:
    """Make the rename itself durable; not possible on every platform (Windows), where it is skipped."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
