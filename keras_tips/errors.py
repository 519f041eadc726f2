"""The error of every checkpoint problem, raised across the package."""


class CheckpointError(ValueError, RuntimeError):
    """A checkpoint cannot be fetched, read, written or used.

    Raised by the converter of the official release (a missing, truncated,
    foreign or mismatched `.npz` file or tokenizer), by the download of a
    registered checkpoint, and by training checkpoints (a damaged, altered or
    incompatible checkpoint on restore, non-finite weights on save). The
    message names the file and says what to do.

    It is a `ValueError` (the file's content does not fit, as Keras' loaders
    report it) and a `RuntimeError` (a run cannot fetch, save or resume), so
    that handlers written for either catch it.
    """
