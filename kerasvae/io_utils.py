"""Atomic file writes (a reader sees the old file or the new one, never half) and file checks."""

import contextlib
import os
import tempfile
import zipfile
import zlib


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


# What `keras.saving.load_model` reads from a `.keras` archive.
KERAS_ARCHIVE_MEMBERS = ("metadata.json", "config.json", "model.weights.h5")


def check_keras_archive(path):
    """Checks that `path` is a complete, undamaged `.keras` file, before Keras reads it.

    Reads every member of the zip archive to its end, which verifies each
    member's CRC-32, and checks that the members Keras loads are present.
    `keras.saving.load_model` refuses such files too, but with errors that
    do not say which file ("File is not a zip file", "Bad CRC-32 for file
    'model.weights.h5'"); a loader of user files (pretrained, the CLI, a
    resume) calls this first so the error names the path.

    Raises:
        FileNotFoundError: there is no file at `path`.
        ValueError: the file is truncated, damaged or not a `.keras` archive;
            the message names the file and the damaged or missing member.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No .keras file at {path!r}.")
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            damaged = archive.testzip()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, zlib.error, ValueError) as e:
        raise ValueError(
            f"{path!r} is not a readable .keras file (truncated or damaged?): {e}"
        ) from e
    if damaged is not None:
        raise ValueError(
            f"The .keras file {path!r} is damaged: its member {damaged!r} fails the "
            "CRC-32 check (its bytes changed after it was written)."
        )
    missing = [name for name in KERAS_ARCHIVE_MEMBERS if name not in names]
    if missing:
        raise ValueError(
            f"The .keras file {path!r} lacks {missing}: it is truncated or was not "
            f"written by model.save. Found: {sorted(names)}"
        )
