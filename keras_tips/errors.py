"""The error of every checkpoint problem, raised across the package."""


class CheckpointError(ValueError, RuntimeError):
    """A checkpoint cannot be read, written or used.

    Raised by the converter of the official release (a missing, truncated,
    foreign or mismatched `.npz` file or tokenizer) and by training
    checkpoints (a damaged, altered or incompatible checkpoint on restore, a
    checkpoint interval other than the recipe's, non-finite weights on
    save). The message names the file and says what to do.

    It is a `ValueError` (the file's content does not fit, as Keras' loaders
    report it) and a `RuntimeError` (a run cannot save or resume), so that
    handlers written for either catch it.

    Example:
    ```python
    try:
        keras_tips.convert_official_checkpoint(output_dir="tips_b14", ...)
    except keras_tips.CheckpointError as error:
        print(error)  # e.g. "The text checkpoint ... has no 'temperature'"
    ```
    """
