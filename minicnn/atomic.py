"""Write a file under a temporary name in the same folder, then rename it into place.

An interrupted or failed write never leaves a half-written file where the real one goes,
and never destroys the previous version (os.replace is atomic on one filesystem).
"""
from __future__ import annotations

import contextlib
import errno
import os
import tempfile


@contextlib.contextmanager
def atomic_path(path):
    """Yields a temporary path beside `path`; on success it replaces `path`, on error it
    is removed. The file gets the usual permissions (0666 less the umask). A missing folder
    is created; one that cannot be (a file in the way, no permission, a read-only disk) is
    an OSError of the same kind that names `path` and the folder."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    base = os.path.basename(path)
    if os.path.isdir(path):
        raise IsADirectoryError(errno.EISDIR, f"cannot write {path}: it is a folder")
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{base}.", suffix=".tmp", dir=folder)
    except OSError as error:
        reason = error.strerror or str(error)
        raise OSError(error.errno, f"cannot write {path}: its folder {folder} cannot be "
                                   f"created or written to ({reason})") from None
    os.close(fd)
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
