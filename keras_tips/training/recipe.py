"""Pretraining recipes: every hyper-parameter of a run in one settings tree.

A recipe file (see `recipes/`) is a Python module with a function `recipe()`
returning a `PretrainRecipe`; `load_recipe` imports it, applies command-line
overrides such as `train.total_steps=50` and resolves the tree.

Each number is set once. The fields below follow another one, their source;
recipe files leave them unset (None) and resolving fills them in:

| field                               | follows                          |
|-------------------------------------|----------------------------------|
| `data.pipeline.global_image_size`   | `data.image_size`                |
| `data.pipeline.patch_size`          | `model.vision["patch_size"]`     |
| `data.pipeline.seed`                | `train.seed`                     |
| `model.text["max_sequence_length"]` | `data.sequence_length`           |
| `optimizer.total_steps`             | `train.total_steps`              |
| `model.vision["position_grid_size"]`| `data.image_size // patch size`  |
| `evaluation.image_size`             | `data.image_size`                |

A followed field that is set to another value than its source gives is
refused with a `ValueError` naming both, before anything is built; the last
two may differ on purpose (a position embedding learned for another
resolution, which the image tower interpolates, as the released 448 px
models with their 32 x 32 grid are run at other sizes; an evaluation at
another resolution). A filled-in field keeps following its source: an
override of `data.image_size` applied to a loaded recipe moves the crop, the
position grid and the evaluation with it.

Besides these fields, `train.total_steps` also sets the teacher momentum
schedule, `data.sequence_length` the tokenizer, and `data.image_size` the
generated shapes scenes and the exported preprocessor.
"""

import ast
import dataclasses
import importlib.util
import os
from typing import Callable

from keras_tips.data.pipeline_config import SETTINGS_FROM_RECIPE
from keras_tips.data.pipeline_config import PipelineConfig
from keras_tips.training.optimizers import OptimizerConfig


@dataclasses.dataclass
class ModelConfig:
    """Architecture of the student.

    Attributes:
        vision: dict of `TIPSVisionEncoder` arguments. `patch_size` is
            required; `position_grid_size` follows
            `data.image_size // patch_size` unless set.
        text: dict of `TIPSTextEncoder` arguments; `max_sequence_length`
            follows `data.sequence_length` and `vocabulary_size` comes from
            the tokenizer.
        temperature: float. Initial contrastive temperature.
        dtype: Keras dtype policy of the backbone (None: the global one).
    """

    vision: dict = dataclasses.field(
        default_factory=lambda: dict(
            hidden_dim=96, num_layers=4, num_heads=3, intermediate_dim=384,
            patch_size=14, drop_path_rate=0.0, layer_scale_init_value=0.1,
        )
    )
    text: dict = dataclasses.field(
        default_factory=lambda: dict(
            hidden_dim=96, num_layers=2, num_heads=3, intermediate_dim=384,
        )
    )
    temperature: float = 0.07
    dtype: str | None = None


@dataclasses.dataclass
class ObjectiveConfig:
    """Arguments of `TIPSPretrainer` (all but the backbone and
    `total_steps`, which is `train.total_steps`)."""

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


def recipe_pipeline_config(settings=None):
    """A `PipelineConfig` for a recipe: `settings` (a dict of its fields)
    with the fields the recipe sets itself (`global_image_size`,
    `patch_size`, `seed`) left unset unless given."""
    fields = {name: None for name in SETTINGS_FROM_RECIPE}
    fields.update(settings or {})
    known = {f.name for f in dataclasses.fields(PipelineConfig)}
    unknown = sorted(set(fields) - known)
    if unknown:
        raise ValueError(
            f"Unknown data.pipeline field(s) {unknown}; the fields of "
            f"PipelineConfig are {sorted(known)}."
        )
    return PipelineConfig(**fields)


@dataclasses.dataclass
class DataConfig:
    """Where the image-caption pairs come from, and how they are batched.

    Attributes:
        source: `"shapes"` (embedded, generated), `"jsonl"` (a JSONL index
            of an image folder) or `"array_record"` (shards).
        path: the JSONL file or the ArrayRecord files/glob.
        num_examples: size of the generated shapes training split.
        image_size: int. The training resolution: side of the global crop
            (`pipeline.global_image_size`) and of the generated shapes
            scenes. The position grid, the evaluation and the exported
            preprocessor follow it. A multiple of the patch size.
        max_objects: most shapes per generated scene.
        multi_granularity_captions: bool. Generated scenes give their
            synthetic caption at three granularities (a phrase, one
            sentence, the full description), of which one is drawn per
            example and step, deterministically from the pipeline seed;
            False gives the full description alone. File sources
            (`"jsonl"`, `"array_record"`) are not affected: a list of
            synthetic captions in their data is always drawn from (a list
            is data).
        seed: seed of the generated scenes and of the shapes vocabulary.
        tokenizer: SentencePiece model file; None builds the shapes
            vocabulary (shapes only).
        sequence_length: int. Tokens per caption: the tokenizer's length and
            the text tower's `max_sequence_length`.
        pipeline: `PipelineConfig` (crops, masks, augmentation, workers), or
            a dict of its fields (the form used in recipe files), in which
            `global_image_size`, `patch_size` and `seed` are left unset.
    """

    source: str = "shapes"
    path: str | None = None
    num_examples: int = 4000
    image_size: int = 56
    max_objects: int = 4
    multi_granularity_captions: bool = False
    seed: int = 0
    tokenizer: str | None = None
    sequence_length: int = 64
    pipeline: PipelineConfig = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if isinstance(self.pipeline, dict):
            self.pipeline = recipe_pipeline_config(self.pipeline)
        elif not isinstance(self.pipeline, PipelineConfig):
            raise ValueError(
                "data.pipeline must be a PipelineConfig or a dict of its "
                f"fields. Received: {self.pipeline!r}"
            )


@dataclasses.dataclass
class TrainConfig:
    """Length, checkpointing and placement of a run.

    Attributes:
        total_steps: int. Optimizer steps; also the length of the learning
            rate, weight decay and teacher momentum schedules.
        steps_per_checkpoint: int. Checkpoint interval; must divide
            `total_steps`.
        seed: int. Seeds the weights' initialisation and the data order and
            augmentations (`data.pipeline.seed` follows it).
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
    """Evaluation on the embedded shapes splits.

    Attributes:
        num_train: scenes of the validation split that fit the probes and
            the k-NN index.
        num_test: test scenes scored.
        image_size: side of the evaluated scenes; follows `data.image_size`
            unless set (a multiple of the patch size).
        probe_epochs: epochs of the linear segmentation probe.
    """

    num_train: int = 400
    num_test: int = 300
    image_size: int | None = None
    probe_epochs: int = 30


@dataclasses.dataclass(frozen=True)
class FollowedField:
    """A recipe field whose value follows another setting.

    Attributes:
        path: the field, e.g. `"optimizer.total_steps"`.
        source: what it follows, as a reader would write it.
        value: function recipe -> the value the source gives.
        may_differ: bool. Whether an explicit other value is allowed.
    """

    path: str
    source: str
    value: Callable
    may_differ: bool = False


def _patch_size(recipe):
    return recipe.model.vision["patch_size"]


FOLLOWED_FIELDS = (
    FollowedField(
        "data.pipeline.global_image_size",
        "data.image_size",
        lambda r: r.data.image_size,
    ),
    FollowedField(
        "data.pipeline.patch_size", "model.vision.patch_size", _patch_size
    ),
    FollowedField("data.pipeline.seed", "train.seed", lambda r: r.train.seed),
    FollowedField(
        "model.text.max_sequence_length",
        "data.sequence_length",
        lambda r: r.data.sequence_length,
    ),
    FollowedField(
        "optimizer.total_steps",
        "train.total_steps",
        lambda r: r.train.total_steps,
    ),
    FollowedField(
        "model.vision.position_grid_size",
        "data.image_size // model.vision.patch_size",
        lambda r: r.data.image_size // _patch_size(r),
        may_differ=True,
    ),
    FollowedField(
        "evaluation.image_size",
        "data.image_size",
        lambda r: r.data.image_size,
        may_differ=True,
    ),
)


@dataclasses.dataclass
class PretrainRecipe:
    """A whole pretraining run: model, objective, optimizer, data, training
    and evaluation settings (see the module docstring for the fields that
    follow others).

    Example:
    ```python
    recipe = load_recipe("recipes/tiny_shapes.py", ["data.image_size=112"])
    recipe.model.vision["position_grid_size"]  # 8
    ```
    """

    name: str = "tiny_shapes"
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    objective: ObjectiveConfig = dataclasses.field(default_factory=ObjectiveConfig)
    optimizer: OptimizerConfig = dataclasses.field(default_factory=OptimizerConfig)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    evaluation: EvaluationConfig = dataclasses.field(default_factory=EvaluationConfig)

    def __post_init__(self):
        # path -> value of each field that `resolve` filled in. Such a field
        # follows its source until something sets it to another value.
        self._followed = {}

    def resolve(self):
        """Fills in the followed fields; refuses contradictory ones.

        Returns:
            self.

        Raises:
            ValueError: a followed field set to another value than its
                source gives, or a source out of range.
        """
        self._check_sources()
        filled = {}
        for field in FOLLOWED_FIELDS:
            current = _get_field(self, field.path)
            value = field.value(self)
            if (
                current is None
                or current == value
                or self._followed.get(field.path, None) == current
            ):
                filled[field.path] = value
            elif field.may_differ:
                self._followed.pop(field.path, None)
            else:
                raise ValueError(
                    f"{field.path}={current!r} contradicts {field.source}="
                    f"{value!r}: {field.path} follows {field.source}. Set "
                    f"{field.source} instead, or leave {field.path} unset."
                )
        _set_fields(self, filled)
        self._followed.update(filled)
        patch_size = _patch_size(self)
        size = self.evaluation.image_size
        if not isinstance(size, int) or size < patch_size or size % patch_size:
            raise ValueError(
                f"evaluation.image_size ({size!r}) must be a positive "
                f"multiple of model.vision.patch_size ({patch_size})."
            )
        grid = self.model.vision["position_grid_size"]
        if not isinstance(grid, int) or grid < 1:
            raise ValueError(
                "model.vision.position_grid_size must be a positive int. "
                f"Received: {grid!r}"
            )
        return self

    def _check_sources(self):
        patch_size = self.model.vision.get("patch_size")
        if not isinstance(patch_size, int) or patch_size < 1:
            raise ValueError(
                "model.vision.patch_size must be set to a positive int (14 "
                f"for TIPS). Received: {patch_size!r}"
            )
        size = self.data.image_size
        if not isinstance(size, int) or size < patch_size or size % patch_size:
            raise ValueError(
                f"data.image_size ({size!r}) must be a positive multiple of "
                f"model.vision.patch_size ({patch_size})."
            )
        for path in ("data.sequence_length", "train.total_steps"):
            value = _get_field(self, path)
            if not isinstance(value, int) or value < 1:
                raise ValueError(
                    f"{path} must be a positive int. Received: {value!r}"
                )

    def validate(self):
        """Resolves the tree (see `resolve`) and checks the settings.

        Returns:
            self.
        """
        self.resolve()
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
        if not isinstance(self.data.multi_granularity_captions, bool):
            raise ValueError(
                "data.multi_granularity_captions must be True or False. "
                f"Received: {self.data.multi_granularity_captions!r}"
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


_BOOLEAN_WORDS = {"true": True, "false": False}


def apply_overrides(recipe, overrides):
    """Applies `section.field=value` (or deeper) overrides to a recipe.

    Values are Python literals (`50`, `0.1`, `"jsonl"`, `(0.9, 1.0)`,
    `None`) or `true` / `false` in any case (booleans, as a command line
    writes them); anything else is taken as a string. An
    overridden followed field counts as set explicitly: `resolve` refuses it
    if it contradicts its source.
    """
    followed = getattr(recipe, "_followed", {})
    for override in overrides or ():
        if "=" not in override:
            raise ValueError(f"Override {override!r} is not of the form key=value.")
        key, text = override.split("=", 1)
        key = key.strip()
        if text.strip().lower() in _BOOLEAN_WORDS:
            value = _BOOLEAN_WORDS[text.strip().lower()]
        else:
            try:
                value = ast.literal_eval(text)
            except (ValueError, SyntaxError):
                value = text
        _assign(recipe, key.split("."), value, key)
        for path in list(followed):
            if path == key or path.startswith(key + "."):
                del followed[path]
    return recipe


def _get_field(recipe, path):
    """The value at a field path; None for a key missing from a dict."""
    target = recipe
    for field in path.split("."):
        if isinstance(target, dict):
            target = target.get(field)
        else:
            target = getattr(target, field)
    return target


def _set_fields(recipe, values):
    """Sets several field paths. The fields of one frozen dataclass change
    together, so that it checks their new values against each other (a
    crop size against a patch size), not against the old ones."""
    by_parent = {}
    for path, value in values.items():
        parent, _, name = path.rpartition(".")
        by_parent.setdefault(parent, {})[name] = value
    for parent, changes in by_parent.items():
        target = _get_field(recipe, parent)
        if isinstance(target, dict):
            target.update(changes)
        elif type(target).__dataclass_params__.frozen:
            _assign(recipe, parent.split("."), dataclasses.replace(target, **changes), parent)
        else:
            for name, value in changes.items():
                setattr(target, name, value)


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
    """Imports a recipe file and returns its resolved, validated
    `PretrainRecipe`.

    The file's recipe is resolved before the overrides apply, so a followed
    field the file sets to its source's value keeps following the source.

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
    recipe = module.recipe()
    if not isinstance(recipe, PretrainRecipe):
        raise ValueError(
            f"{path}: recipe() must return a PretrainRecipe. Received: "
            f"{type(recipe).__name__}"
        )
    recipe.resolve()
    return apply_overrides(recipe, overrides).validate()
