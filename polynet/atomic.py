"""Atomic writes: a file or a directory appears whole under its name or not at all.

Checkpoints, polynomials, exports, downloads and cached maps are written to a temporary file
beside the target, flushed to disk, then renamed over it; directories (the export bundle, a
Zarr store) are built in a temporary sibling and swapped into place. An interrupted write
leaves any earlier file or directory unchanged and no partial one under the real name.

Temporary names are ``.<name>.<pid>-<random><suffix>`` beside the target: the writer's
process id tells :func:`remove_stale` whether its writer is still running, so the next run
removes what a killed one left, and two processes writing one folder never touch each
other's temporaries. New files and folders get the permissions the umask gives (an existing
target keeps its own).
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

__all__ = ["atomic_write", "write_bytes_atomic", "atomic_dir", "replace_dir", "remove_stale"]

logger = logging.getLogger(__name__)

# .<name>.<pid>-<random><suffix>: what atomic_write, atomic_dir and replace_dir leave behind
# when killed; .<name>.<8 hex digits>.old/.tmp: the same from polynet 0.x store writes, which
# recorded no process id.
_TEMP = re.compile(
    r"^\.(?P<name>.+)\.(?:(?P<pid>\d+)-[A-Za-z0-9_]+|[0-9a-f]{8})(?P<suffix>\.[A-Za-z0-9.]+)$"
)


def _umask() -> int:
    """The process umask, read without changing it where Linux allows."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # elsewhere: set and restore (not thread-safe, but brief)
    os.umask(mask)
    return mask


def _mode_for(path: Path, default: int) -> int:
    """The mode a replacement of ``path`` gets: its current one, else ``default`` less umask."""
    try:
        return path.stat().st_mode & 0o7777
    except OSError:
        return default & ~_umask()


def _prefix(path: Path) -> str:
    return f".{path.name}.{os.getpid()}-"


def _fsync_dir(folder: Path) -> None:
    """Make renames inside ``folder`` durable (POSIX); not possible everywhere."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_write(path: str | os.PathLike, suffix: str = ".tmp") -> Iterator[BinaryIO]:
    """Open a binary file that replaces ``path`` when the block ends without an error.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> target = pathlib.Path(tempfile.mkdtemp()) / "out.bin"
    >>> with atomic_write(target) as fh:
    ...     _ = fh.write(b"whole")
    >>> target.read_bytes()
    b'whole'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(path.parent, path.name)
    mode = _mode_for(path, 0o666)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_prefix(path), suffix=suffix)
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fchmod(fh.fileno(), mode)
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; returns the path."""
    with atomic_write(path) as fh:
        fh.write(data)
    return Path(path)


# -- directories ------------------------------------------------------------------------------
def _renameat2():
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2  # glibc >= 2.28
    except (OSError, AttributeError, TypeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


_RENAMEAT2 = _renameat2()
_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one atomic step (Linux ``renameat2``); False where not supported."""
    if _RENAMEAT2 is None:
        return False
    if _RENAMEAT2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP):
        return False  # a file system (or kernel) without the flag: two renames instead
    raise OSError(err, os.strerror(err), str(b))


def replace_dir(new: str | os.PathLike, path: str | os.PathLike) -> None:
    """Put the directory ``new`` at ``path``, replacing any directory there.

    Where the system can swap two names at once (Linux) there is never a moment without a
    directory at ``path``. Elsewhere the old directory is first renamed to a ``.old`` sibling;
    if the process dies between the two renames, :func:`remove_stale` of the next run puts
    it back.
    """
    new, path = Path(new), Path(path)
    if not path.exists():
        os.replace(new, path)
    elif _exchange(new, path):
        shutil.rmtree(new, ignore_errors=True)  # it holds the old directory now
    else:
        old = Path(tempfile.mkdtemp(dir=path.parent, prefix=_prefix(path), suffix=".old"))
        os.rmdir(old)
        os.replace(path, old)
        os.replace(new, path)
        shutil.rmtree(old, ignore_errors=True)
    _fsync_dir(path.parent)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # someone else's process, or cannot tell: leave its files alone
    return True


def _remove(entry: Path) -> None:
    if entry.is_dir() and not entry.is_symlink():
        shutil.rmtree(entry, ignore_errors=True)
    else:
        try:
            entry.unlink()
        except OSError:
            pass


def remove_stale(folder: str | os.PathLike, name: str | None = None) -> int:
    """Clean up after writers that were killed; returns the entries removed or restored.

    In ``folder`` (only those of target ``name`` when given), temporaries of processes that
    no longer run are removed, and a directory hidden as ``.old`` by a replacement that died
    between its two renames is put back when its target is missing (removed otherwise).
    A missing or unreadable folder has nothing to clean.
    """
    folder = Path(folder)
    try:
        entries = list(folder.iterdir())
    except OSError:
        return 0
    cleaned = 0
    for entry in sorted(entries):
        m = _TEMP.match(entry.name)
        if m is None or (name is not None and m["name"] != name):
            continue
        if m["pid"] is not None and _alive(int(m["pid"])):
            continue
        target = folder / m["name"]
        try:
            if m["suffix"] == ".old" and not os.path.lexists(target):
                os.replace(entry, target)
                logger.warning("restored %s, which an interrupted replacement had hidden", target)
            else:
                _remove(entry)
            cleaned += 1
        except OSError:
            pass
    return cleaned


def _in_use(path: Path) -> bool:
    """True for a folder that cannot be swapped: the working directory or above, a mount, or
    one in a folder we cannot write (its own files we may still replace)."""
    if not os.access(path.parent, os.W_OK | os.X_OK):
        return True
    try:
        cwd = Path.cwd().resolve()
    except OSError:
        cwd = None
    resolved = path.resolve()
    return (cwd is not None and (resolved == cwd or resolved in cwd.parents)) or (
        resolved.exists() and os.path.ismount(resolved)
    )


def _carry(src: Path, dst: Path) -> None:
    """Hard-link (else copy) ``src`` to ``dst``: a file, or a folder recursively."""

    def link(a: str, b: str) -> None:
        try:
            os.link(a, b)
        except OSError:
            shutil.copy2(a, b)

    if src.is_dir() and not src.is_symlink():
        shutil.copytree(src, dst, symlinks=True, copy_function=link)
    elif src.is_symlink():
        os.symlink(os.readlink(src), dst)
    else:
        link(str(src), str(dst))


@contextmanager
def atomic_dir(path: str | os.PathLike, replaces: Collection[str] | None = None) -> Iterator[Path]:
    """Build a directory that replaces ``path`` whole when the block ends without an error.

    The block writes into the yielded temporary sibling; on success it is swapped into place
    with :func:`replace_dir`, so readers see the old directory or the complete new one, never
    a mix. With ``replaces`` (entry names), only those entries belong to the writer: other
    entries already in ``path`` (a checkpoint beside an export bundle) are carried into the
    new directory (hard links) before the swap. On an error the temporary is removed and
    ``path`` is unchanged. A folder that cannot be swapped (the working directory or one above
    it, a mount point) is written in place, file by file.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> target = pathlib.Path(tempfile.mkdtemp()) / "bundle"
    >>> with atomic_dir(target) as tmp:
    ...     _ = (tmp / "a.txt").write_text("whole")
    >>> sorted(p.name for p in target.iterdir())
    ['a.txt']
    """
    path = Path(os.path.abspath(path))
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "exists and is not a directory", str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(path.parent, path.name)
    if path.is_dir() and _in_use(path):
        logger.warning("%s is in use (working directory or mount): written in place", path)
        yield path
        return
    mode = _mode_for(path, 0o777)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=_prefix(path), suffix=".tmp"))
    try:
        os.chmod(tmp, mode)
        yield tmp
        if replaces is not None and path.is_dir():
            for entry in path.iterdir():
                if entry.name not in replaces and not os.path.lexists(tmp / entry.name):
                    _carry(entry, tmp / entry.name)
        _fsync_dir(tmp)
        replace_dir(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
