"""Official TIPS files -> a Keras task and its preset directory.

The task class is an argument, as in keras-hub's preset loaders: this module
depends on the parts of a model (encoders, tokenizer, preprocessor) and not
on `TIPSModel`, so that `TIPSModel.from_preset` can convert a registered
checkpoint through it without an import cycle. `keras_tips.conversion.convert`
binds it to `TIPSModel` for the public API.
"""

import os

from keras_tips.atomic_files import check_output_dir
from keras_tips.atomic_files import save_preset_atomically
from keras_tips.conversion.official_checkpoint import load_official_text_weights
from keras_tips.conversion.official_checkpoint import load_official_vision_weights
from keras_tips.conversion.official_checkpoint import read_npz
from keras_tips.conversion.official_checkpoint import text_config_from_state
from keras_tips.conversion.official_checkpoint import vision_config_from_state
from keras_tips.errors import CheckpointError
from keras_tips.models.tips_backbone import TIPSBackbone
from keras_tips.models.tips_image_converter import TIPSImageConverter
from keras_tips.models.tips_preprocessor import TIPSPreprocessor
from keras_tips.models.tips_text_encoder import TIPSTextEncoder
from keras_tips.models.tips_tokenizer import TIPSTokenizer
from keras_tips.models.tips_vision_encoder import TIPSVisionEncoder


def build_task_from_official(
    task_class,
    vision_path,
    text_path,
    tokenizer_path,
    image_size=448,
    vision_num_heads=None,
    text_num_heads=None,
    max_sequence_length=64,
):
    """Builds a task holding the weights of official `.npz` files.

    Args:
        task_class: the `keras_hub.models.Task` to build, called as
            `task_class(backbone=TIPSBackbone, preprocessor=TIPSPreprocessor)`
            (`TIPSModel`).
        vision_path: path of `<name>_vision.npz`.
        text_path: path of `<name>_text.npz` (holds the temperature too).
        tokenizer_path: path of the SentencePiece `tokenizer.model`.
        image_size: int or (height, width). Resolution of the preprocessor.
        vision_num_heads: optional int; inferred from standard widths.
        text_num_heads: optional int; inferred from standard widths.
        max_sequence_length: int. Tokenizer and text-tower length (64).

    Returns:
        A `task_class` instance.

    Raises:
        CheckpointError: a file is missing, unreadable, not an official TIPS
            checkpoint, or the files do not belong together.

    Example:
    ```python
    model = build_task_from_official(
        keras_tips.TIPSModel,
        vision_path="tips_oss_b14_highres_distilled_vision.npz",
        text_path="tips_oss_b14_highres_distilled_text.npz",
        tokenizer_path="tokenizer.model",
    )
    ```
    """
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
    return assemble_task(
        task_class,
        vision_encoder,
        text_encoder,
        temperature=float(text_state["temperature"]),
        tokenizer_path=tokenizer_path,
        image_size=image_size,
    )


def assemble_task(
    task_class, vision_encoder, text_encoder, temperature, tokenizer_path, image_size
):
    """Puts converted towers, the temperature and the tokenizer together
    into a task with its preprocessor (the last step of every converter).

    Args:
        task_class: the `keras_hub.models.Task` to build (`TIPSModel`).
        vision_encoder: a `TIPSVisionEncoder` holding its weights.
        text_encoder: a `TIPSTextEncoder` holding its weights.
        temperature: float. The learned temperature (both alignments).
        tokenizer_path: path of the SentencePiece `tokenizer.model`.
        image_size: int or (height, width). Resolution of the preprocessor.

    Returns:
        A `task_class` instance.

    Raises:
        CheckpointError: the tokenizer does not fit the text tower.
    """
    backbone = TIPSBackbone(vision_encoder, text_encoder, temperature=temperature)
    backbone.contrastive_head.set_temperature(temperature)
    tokenizer = TIPSTokenizer(
        proto=os.fspath(tokenizer_path),
        sequence_length=text_encoder.max_sequence_length,
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
    return task_class(backbone=backbone, preprocessor=preprocessor)


def convert_to_preset(task_class, output_dir, overwrite=False, **kwargs):
    """Converts official `.npz` checkpoints into a preset directory.

    The preset is written to a temporary folder beside `output_dir` and moved
    into place at the end, so an interrupted conversion never leaves a
    half-written preset behind.

    Args:
        task_class: the task to build and save (`TIPSModel`).
        output_dir: str. Preset directory to create.
        overwrite: bool. Replace an existing `output_dir`.
        **kwargs: the file and size arguments of `build_task_from_official`.

    Returns:
        The converted `task_class` instance.

    Example:
    ```python
    convert_to_preset(
        keras_tips.TIPSModel,
        output_dir="tips_b14",
        vision_path="tips_oss_b14_highres_distilled_vision.npz",
        text_path="tips_oss_b14_highres_distilled_text.npz",
        tokenizer_path="tokenizer.model",
    )
    ```
    """
    output_dir = check_output_dir(output_dir, overwrite)
    task = build_task_from_official(task_class, **kwargs)
    save_preset_atomically(task, output_dir)
    return task
