"""Writing a file so that a kill never leaves it half-written."""

import os
import tempfile

TMP_PREFIX = ".tmp-"


def write_atomically(path, data):
    """Writes `data` (str as UTF-8, or bytes) to `path` atomically.

    The data goes to a temporary file in the same folder, is flushed to
    disk, and then replaces `path` in one `os.replace`: a reader (or the next
    run after a kill) sees either the old file or the complete new one. The
    temporary file is removed if writing fails.

    Args:
        path: str. The file to write; its folder is created if missing.
        data: str or bytes.
    """
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, dir=directory)
    try:
        if isinstance(data, str):
            data = data.encode("utf-8")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
