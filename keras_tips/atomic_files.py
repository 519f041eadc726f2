"""Writing a file or a preset directory so that a kill never leaves it
half-written."""

import os
import shutil
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


def check_output_dir(output_dir, overwrite=False):
    """Refuses to replace an existing directory unless asked to.

    Args:
        output_dir: str or path. The directory to create.
        overwrite: bool. Whether an existing `output_dir` may be replaced.

    Returns:
        The absolute path of `output_dir`.
    """
    output_dir = os.path.abspath(os.fspath(output_dir))
    if os.path.exists(output_dir) and not overwrite:
        raise FileExistsError(
            f"{output_dir!r} already exists; pass overwrite=True (--overwrite) "
            "to replace it."
        )
    return output_dir


def save_preset_atomically(model, output_dir):
    """`model.save_to_preset(output_dir)`, all or nothing.

    The preset is written to a temporary folder beside `output_dir` and
    moved into place at the end (replacing an existing `output_dir`), so an
    interrupted conversion never leaves a half-written preset behind.

    Args:
        model: anything with `save_to_preset(directory)`: a `TIPSModel`, a
            `TIPSDPTHead`.
        output_dir: str. Absolute path of the preset directory.
    """
    parent = os.path.dirname(output_dir)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".converting-", dir=parent)
    try:
        model.save_to_preset(staging)
        if os.path.exists(output_dir):
            shutil.rmtree(output_dir)
        os.replace(staging, output_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
