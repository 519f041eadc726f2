"""Pretraining recipes: every hyper-parameter of a run in one dataclass.

A recipe file (see `recipes/`) is a Python module with a function `recipe()`
returning a `PretrainRecipe`; `load_recipe` imports it and applies
command-line overrides such as `train.total_steps=50`.
"""

import ast
import dataclasses
import importlib.util
import os

from keras_tips.data.pipeline import PipelineConfig
from keras_tips.training.optimizers import OptimizerConfig


@dataclasses.dataclass
class ModelConfig:
    """Architecture of the student (see `TIPSVisionEncoder` /
    `TIPSTextEncoder`). `text.vocabulary_size` comes from the tokenizer."""

    vision: dict = dataclasses.field(
        default_factory=lambda: dict(
            hidden_dim=96, num_layers=4, num_heads=3, intermediate_dim=384,
            position_grid_size=4, drop_path_rate=0.0, layer_scale_init_value=0.1,
        )
    )
    text: dict = dataclasses.field(
        default_factory=lambda: dict(
            hidden_dim=96, num_layers=2, num_heads=3, intermediate_dim=384,
            max_sequence_length=64,
        )
    )
    temperature: float = 0.07
    dtype: str | None = None


@dataclasses.dataclass
class ObjectiveConfig:
    """Arguments of `TIPSPretrainer` (all but the backbone and step count)."""

    num_prototypes: int = 1024
    head_hidden_dim: int = 256
    head_bottleneck_dim: int = 64
    head_num_layers: int = 3
    share_heads: bool = False
    distill_weight: float = 1.0
    mask_weight: float = 2.0
    koleo_weight: float = 0.0
    use_synthetic_captions: bool = True
    caption_weighting: str = "available"
    teacher_momentum: tuple = (0.994, 1.0)
    teacher_temperature: tuple = (0.04, 0.07)
    teacher_temperature_warmup_steps: int = 0
    student_temperature: float = 0.1
    center_momentum: float = 0.9
    centering: str = "centering"
    contrastive_view: str = "unmasked"
    self_distillation_start_step: int = 0


@dataclasses.dataclass
class DataConfig:
    """Where the image-caption pairs come from.

    Attributes:
        source: `"shapes"` (embedded, generated), `"jsonl"` (a JSONL index
            of an image folder) or `"array_record"` (shards).
        path: the JSONL file or the ArrayRecord files/glob.
        num_examples: size of the generated shapes training split.
        image_size: side of the generated shapes images.
        max_objects: most shapes per generated scene.
        object_scale: multiplies the side of every generated shape.
        tokenizer: SentencePiece model file; None builds the shapes
            vocabulary (shapes only).
        sequence_length: tokens per caption.
        pipeline: `PipelineConfig` (crops, masks, augmentation, workers).
    """

    source: str = "shapes"
    path: str | None = None
    num_examples: int = 4000
    image_size: int = 56
    max_objects: int = 4
    object_scale: float = 1.0
    seed: int = 0
    tokenizer: str | None = None
    sequence_length: int = 64
    pipeline: PipelineConfig = dataclasses.field(default_factory=PipelineConfig)


@dataclasses.dataclass
class TrainConfig:
    """Length, checkpointing and placement of a run.

    Attributes:
        total_steps: int. Optimizer steps.
        steps_per_checkpoint: int. Checkpoint interval; must divide
            `total_steps`.
        seed: int.
        distribution: `"none"`, `"data_parallel"` or `"model_parallel:N"`
            (N devices per model replica).
        jit_compile: bool or "auto".
        nonfinite: what a step with a non-finite loss does. `"stop"`:
            training stops with a `FloatingPointError` naming the step and
            the terms (no checkpoint of it is written). `"skip"`: the
            optimizer update of any step whose gradients are not all finite
            is not applied (weights, moments and learning-rate schedule stay
            as they were) and the run goes on; it still stops when a whole
            checkpoint interval is skipped or when state updated in the
            forward pass (EMA teacher, centres) becomes non-finite.
            Checkpoints of one mode do not restore in the other.
    """

    total_steps: int = 1000
    steps_per_checkpoint: int = 100
    seed: int = 0
    distribution: str = "none"
    jit_compile: object = "auto"
    nonfinite: str = "stop"


@dataclasses.dataclass
class EvaluationConfig:
    """Evaluation on the embedded shapes splits."""

    num_train: int = 400
    num_test: int = 300
    image_size: int = 56
    probe_epochs: int = 30


@dataclasses.dataclass
class PretrainRecipe:
    name: str = "tiny_shapes"
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    objective: ObjectiveConfig = dataclasses.field(default_factory=ObjectiveConfig)
    optimizer: OptimizerConfig = dataclasses.field(default_factory=OptimizerConfig)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    evaluation: EvaluationConfig = dataclasses.field(default_factory=EvaluationConfig)

    def validate(self):
        if self.train.total_steps % self.train.steps_per_checkpoint:
            raise ValueError(
                f"train.steps_per_checkpoint ({self.train.steps_per_checkpoint}) "
                f"must divide train.total_steps ({self.train.total_steps})."
            )
        if self.train.nonfinite not in ("stop", "skip"):
            raise ValueError(
                "train.nonfinite must be 'stop' or 'skip'; received "
                f"{self.train.nonfinite!r}."
            )
        if self.data.source not in ("shapes", "jsonl", "array_record"):
            raise ValueError(
                "data.source must be 'shapes', 'jsonl' or 'array_record'; "
                f"received {self.data.source!r}."
            )
        if self.data.source != "shapes" and not self.data.path:
            raise ValueError(f"data.source={self.data.source!r} needs data.path.")
        if self.data.source != "shapes" and not self.data.tokenizer:
            raise ValueError(
                "data.tokenizer (a SentencePiece model) is required outside "
                "the embedded shapes dataset."
            )
        return self

    def to_dict(self):
        return dataclasses.asdict(self)


def apply_overrides(recipe, overrides):
    """Applies `section.field=value` (or deeper) overrides to a recipe.

    Values are Python literals (`50`, `0.1`, `"jsonl"`, `(0.9, 1.0)`,
    `None`); anything that is not a literal is taken as a string.
    """
    for override in overrides or ():
        if "=" not in override:
            raise ValueError(f"Override {override!r} is not of the form key=value.")
        key, text = override.split("=", 1)
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            value = text
        _assign(recipe, key.strip().split("."), value, key)
    return recipe


def _assign(target, parts, value, key):
    """Sets `parts` (a field path) under `target` to `value`; returns the
    updated target. Frozen dataclasses (e.g. `PipelineConfig`) are replaced
    by a changed copy, set in their parent."""
    field = parts[0]
    if isinstance(target, dict):
        if len(parts) > 1 and field not in target:
            raise ValueError(f"Unknown recipe field {key!r}.")
        current = target.get(field)
    elif dataclasses.is_dataclass(target) and field in {
        f.name for f in dataclasses.fields(target)
    }:
        current = getattr(target, field)
    else:
        raise ValueError(f"Unknown recipe field {key!r}.")
    if len(parts) > 1:
        value = _assign(current, parts[1:], value, key)
    if isinstance(target, dict):
        target[field] = value
        return target
    if type(target).__dataclass_params__.frozen:
        return dataclasses.replace(target, **{field: value})
    setattr(target, field, value)
    return target


def load_recipe(path, overrides=None):
    """Imports a recipe file and returns its validated `PretrainRecipe`.

    Args:
        path: a `.py` file defining `recipe()`.
        overrides: list of `key=value` strings.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No recipe file {path!r}.")
    spec = importlib.util.spec_from_file_location("keras_tips_recipe", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "recipe"):
        raise ValueError(f"{path} defines no `recipe()` function.")
    return apply_overrides(module.recipe(), overrides).validate()
