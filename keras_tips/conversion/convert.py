"""The public converters of the official release.

Official TIPS checkpoints into a `TIPSModel` and its preset
(`keras_tips.convert_official_checkpoint`, `keras-tips convert`):
`keras_tips.conversion.official_preset` with the task bound to `TIPSModel`.
Official DPT decoder checkpoints into a `TIPSDPTHead` and its preset
(`keras_tips.convert_dpt_checkpoint`): `keras_tips.conversion.dpt_checkpoint`
with the head bound to `TIPSDPTHead`.
"""

from keras_tips.conversion.dpt_checkpoint import build_head_from_checkpoint
from keras_tips.conversion.dpt_checkpoint import convert_to_head_preset
from keras_tips.conversion.official_preset import build_task_from_official
from keras_tips.conversion.official_preset import convert_to_preset
from keras_tips.models.tips_dpt_head import TIPSDPTHead
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


def build_dpt_head_from_checkpoint(
    checkpoint_path,
    task,
    encoder_layers=None,
    min_depth=None,
    max_depth=None,
):
    """Builds a `TIPSDPTHead` holding the weights of an official checkpoint.

    Args:
        checkpoint_path: path of the released `<model>_<task>_dpt.zip` (or
            any `.npz` in the Scenic or PyTorch layout).
        task: `"segmentation"`, `"depth"` or `"normals"`.
        encoder_layers: optional four image-tower blocks feeding the levels;
            by default those of the released head of the same width.
        min_depth: optional float, depth only (default 0.001, or the
            checkpoint's `bin_centers`).
        max_depth: optional float, depth only (default 10.0).

    Returns:
        A `TIPSDPTHead`.

    Example:
    ```python
    head = build_dpt_head_from_checkpoint("tips_v2_b14_depth_dpt.zip", "depth")
    ```
    """
    return build_head_from_checkpoint(
        TIPSDPTHead,
        checkpoint_path,
        task,
        encoder_layers=encoder_layers,
        min_depth=min_depth,
        max_depth=max_depth,
    )


def convert_dpt_checkpoint(
    checkpoint_path,
    task,
    output_dir,
    encoder_layers=None,
    min_depth=None,
    max_depth=None,
    overwrite=False,
):
    """Converts an official DPT decoder checkpoint into a head preset.

    Reads the released Scenic/Flax arrays (`<model>_<task>_dpt.zip`) or the
    PyTorch key layout the official loader also accepts, without pickle;
    infers the sizes from the arrays and refuses a missing, unexpected or
    mis-shaped array with a message that names it. The preset is written to
    a temporary folder and moved into place at the end, so an interrupted
    conversion leaves nothing half-written.

    Args:
        checkpoint_path: path of the released `<model>_<task>_dpt.zip` (or
            any `.npz` in the Scenic or PyTorch layout).
        task: `"segmentation"`, `"depth"` or `"normals"`.
        output_dir: str. Preset directory to create.
        encoder_layers: optional four image-tower blocks feeding the levels
            (`--layers`); by default those of the released head of the same
            width: B/14 [2, 5, 8, 11], L/14 [5, 11, 17, 23], So400m/14
            [6, 13, 20, 26], g/14 [9, 19, 29, 39].
        min_depth: optional float, depth only (default 0.001).
        max_depth: optional float, depth only (default 10.0).
        overwrite: bool. Replace an existing `output_dir`.

    Returns:
        The converted `TIPSDPTHead`.

    Example:
    ```python
    keras_tips.convert_dpt_checkpoint(
        "tips_v2_b14_depth_dpt.zip", task="depth", output_dir="b14_depth"
    )
    head = keras_tips.TIPSDPTHead.from_preset("b14_depth")
    ```
    """
    return convert_to_head_preset(
        TIPSDPTHead,
        checkpoint_path,
        task,
        output_dir,
        overwrite=overwrite,
        encoder_layers=encoder_layers,
        min_depth=min_depth,
        max_depth=max_depth,
    )
