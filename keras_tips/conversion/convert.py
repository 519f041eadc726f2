"""Converts official TIPS checkpoints into a `TIPSModel` and its preset.

The public converter (`keras_tips.convert_official_checkpoint`, `keras-tips
convert`): `keras_tips.conversion.official_preset` with the task bound to
`TIPSModel`.
"""

from keras_tips.conversion.official_preset import build_task_from_official
from keras_tips.conversion.official_preset import convert_to_preset
from keras_tips.models.tips_model import TIPSModel


def build_model_from_official(
    vision_path,
    text_path,
    tokenizer_path,
    image_size=448,
    vision_num_heads=None,
    text_num_heads=None,
    max_sequence_length=64,
):
    """Builds a `TIPSModel` holding the weights of official `.npz` files.

    Args:
        vision_path: path of `<name>_vision.npz`.
        text_path: path of `<name>_text.npz` (holds the temperature too).
        tokenizer_path: path of the SentencePiece `tokenizer.model`.
        image_size: int or (height, width). Resolution of the preprocessor.
        vision_num_heads: optional int; inferred from standard widths.
        text_num_heads: optional int; inferred from standard widths.
        max_sequence_length: int. Tokenizer and text-tower length (64).

    Returns:
        A `TIPSModel`.

    Example:
    ```python
    model = build_model_from_official(
        vision_path="tips_oss_b14_highres_distilled_vision.npz",
        text_path="tips_oss_b14_highres_distilled_text.npz",
        tokenizer_path="tokenizer.model",
    )
    ```
    """
    return build_task_from_official(
        TIPSModel,
        vision_path=vision_path,
        text_path=text_path,
        tokenizer_path=tokenizer_path,
        image_size=image_size,
        vision_num_heads=vision_num_heads,
        text_num_heads=text_num_heads,
        max_sequence_length=max_sequence_length,
    )


def convert_official_checkpoint(output_dir, overwrite=False, **kwargs):
    """Converts official `.npz` checkpoints into a preset directory.

    The preset is written to a temporary folder beside `output_dir` and moved
    into place at the end, so an interrupted conversion never leaves a
    half-written preset behind.

    Args:
        output_dir: str. Preset directory to create.
        overwrite: bool. Replace an existing `output_dir`.
        **kwargs: arguments of `build_model_from_official`.

    Returns:
        The converted `TIPSModel`.

    Example:
    ```python
    convert_official_checkpoint(
        output_dir="tips_b14",
        vision_path="tips_oss_b14_highres_distilled_vision.npz",
        text_path="tips_oss_b14_highres_distilled_text.npz",
        tokenizer_path="tokenizer.model",
    )
    model = keras_tips.TIPSModel.from_preset("tips_b14")
    ```
    """
    return convert_to_preset(TIPSModel, output_dir, overwrite=overwrite, **kwargs)
