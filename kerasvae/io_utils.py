"""Atomic file writes: a reader sees the old file or the new one, never half."""

import contextlib
import os
import tempfile


@contextlib.contextmanager
def atomic_open(path, mode="w"):
    """Opens a temporary file beside `path`; on success it replaces `path`.

    The data is flushed to disk before the rename, and the file is made
    world-readable (`mkstemp` creates it 0600; servers and viewers may run as
    another user). If the block raises, the temporary file is removed and
    `path` is left as it was.

    Example:

    ```python
    with atomic_open("models.config") as f:
        f.write(text)
    ```
    """
    path = os.path.abspath(os.fspath(path))
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
    try:
        encoding = None if "b" in mode else "utf-8"
        with os.fdopen(fd, mode, encoding=encoding) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path, text):
    """Writes `text` to `path` atomically; returns the absolute path."""
    with atomic_open(path) as f:
        f.write(text)
    return os.path.abspath(os.fspath(path))
