"""Converts official TIPS checkpoints into a Keras preset directory."""

import os
import shutil
import tempfile

from keras_tips.conversion.official_checkpoint import CheckpointError
from keras_tips.conversion.official_checkpoint import load_official_text_weights
from keras_tips.conversion.official_checkpoint import load_official_vision_weights
from keras_tips.conversion.official_checkpoint import read_npz
from keras_tips.conversion.official_checkpoint import text_config_from_state
from keras_tips.conversion.official_checkpoint import vision_config_from_state


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
    """
    from keras_tips.models.tips_backbone import TIPSBackbone
    from keras_tips.models.tips_image_converter import TIPSImageConverter
    from keras_tips.models.tips_model import TIPSModel
    from keras_tips.models.tips_preprocessor import TIPSPreprocessor
    from keras_tips.models.tips_text_encoder import TIPSTextEncoder
    from keras_tips.models.tips_tokenizer import TIPSTokenizer
    from keras_tips.models.tips_vision_encoder import TIPSVisionEncoder

    vision_state = read_npz(vision_path, "vision checkpoint")
    text_state = read_npz(text_path, "text checkpoint")
    if "temperature" not in text_state:
        raise CheckpointError(
            f"The text checkpoint {text_path!r} has no 'temperature': is it an "
            "official TIPS text checkpoint (and not the vision one)?"
        )
    if not os.path.isfile(tokenizer_path):
        raise CheckpointError(f"The tokenizer file {tokenizer_path!r} does not exist.")
    vision_encoder = TIPSVisionEncoder(
        **vision_config_from_state(vision_state, vision_num_heads),
        name="vision_encoder",
    )
    vision_encoder.build()
    load_official_vision_weights(vision_encoder, vision_state)
    text_encoder = TIPSTextEncoder(
        **text_config_from_state(text_state, text_num_heads, max_sequence_length),
        name="text_encoder",
    )
    text_encoder.build()
    load_official_text_weights(text_encoder, text_state)
    temperature = float(text_state["temperature"])
    backbone = TIPSBackbone(vision_encoder, text_encoder, temperature=temperature)
    backbone.contrastive_head.set_temperature(temperature)
    tokenizer = TIPSTokenizer(
        proto=os.fspath(tokenizer_path), sequence_length=max_sequence_length
    )
    if tokenizer.vocabulary_size() != text_encoder.vocabulary_size:
        raise CheckpointError(
            f"The tokenizer has {tokenizer.vocabulary_size()} pieces but the "
            f"text tower embeds {text_encoder.vocabulary_size}: they do not "
            "belong together."
        )
    if isinstance(image_size, int):
        image_size = (image_size, image_size)
    preprocessor = TIPSPreprocessor(
        tokenizer=tokenizer, image_converter=TIPSImageConverter(image_size)
    )
    return TIPSModel(backbone=backbone, preprocessor=preprocessor)


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
    from keras_tips.models.tips_tokenizer import TIPSTokenizer  # noqa: F401

    output_dir = check_output_dir(output_dir, overwrite)
    model = build_model_from_official(**kwargs)
    save_preset_atomically(model, output_dir)
    return model


def check_output_dir(output_dir, overwrite=False):
    """Refuses to replace an existing preset unless asked to.

    Args:
        output_dir: str or path. Preset directory to create.
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
        model: anything with `save_to_preset(directory)`: a `TIPSModel`,
            a `TIPSDPTHead`.
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
