"""AdamW for TIPS pretraining: warm-up + cosine learning rate, weight decay
with exclusions and an optional cosine schedule, global and per-module
gradient clipping, a frozen prototype layer for the first steps, and
optional layer-wise learning-rate decay.

Layer-wise decay (as in BEiT / DINOv2 fine-tuning) scales the learning rate
of each variable by

    layer_decay ** (num_layers + 1 - layer_id)

where `layer_id` is read from the variable's path (`variable.path`, e.g.
`tips_vision_encoder/blocks_3/attn/qkv/kernel`):

* `i + 1` when `layer_pattern` matches with group 1 = `i`
  (default `(?:^|/)blocks_(\\d+)/`: the vision transformer blocks; the text
  tower's `resblocks_<i>` do not match);
* `0` when `embedding_pattern` matches (default: patch embedding, CLS,
  register and mask tokens, position embedding);
* `num_layers + 1` otherwise (multiplier 1: final norm, heads, text tower).

The same multiplier scales the decoupled weight decay step of the variable,
as the per-group learning rate does in PyTorch's AdamW.

Two of DINOv2's stabilisers act on the gradients before the update (in
`_backend_apply_gradients`, which every backend's optimizer runs inside
`apply`, in JAX's stateless step too), written with Keras ops only:

* `freeze_last_layer_steps`: during the first N optimizer steps the
  gradient of every variable matching `last_layer_pattern` (the student
  heads' prototypes) is replaced by zeros and its weight decay is skipped.
  Its Adam moments stay zero, so the variable does not move at all, as with
  DINOv2's `grad = None`; one difference: Adam's bias correction then counts
  the optimizer's steps, not the variable's own (PyTorch keeps one count per
  parameter).
* `module_clipnorm`: each module's gradients (a module: the variables whose
  path matches its pattern in `module_patterns`) are scaled together so that
  their joint L2 norm is at most the module's bound, as DINOv2 clips its
  backbone and each head separately. Keras' own `global_clipnorm` clips all
  gradients together; when both are set, the modules are clipped first.
"""

import dataclasses
import re

import keras
from keras import ops

from keras_tips.training.schedules import WarmupCosineDecay
from keras_tips.training.schedules import cosine_schedule

# Matched with `re.search` against `variable.name` (the last path component)
# by `keras.optimizers.Optimizer.exclude_from_weight_decay`.
NO_WEIGHT_DECAY_NAMES = (
    "^bias$",  # dense / conv biases
    "^beta$",  # layer-norm offsets
    "^gamma$",  # layer-norm scales and LayerScale gammas
    "cls_token",
    "register_token",
    "mask_token",
    "position_embedding",
    "temperature",  # learned log-temperatures of the contrastive head
)
DEFAULT_LAYER_PATTERN = r"(?:^|/)blocks_(\d+)/"
DEFAULT_EMBEDDING_PATTERN = (
    r"(?:^|/)(?:patch_embed|cls_token|register_token|mask_token"
    r"|position_embedding)(?:/|$)"
)
# The student heads' prototype matrices (`DINOHead.prototypes`).
DEFAULT_LAST_LAYER_PATTERN = r"(?:^|/)prototypes$"
# Modules of `module_clipnorm`, by a pattern searched in `variable.path`:
# the image tower, the text tower (named `vision_encoder` / `text_encoder`
# by the recipes, `tips_..._encoder` by default, with Keras' `_<n>` suffix
# when a name repeats), and the projection heads (DINO, iBOT, and the
# contrastive head's temperatures).
DEFAULT_MODULE_PATTERNS = {
    "image": r"(?:^|/)(?:tips_)?vision_encoder(?:_\d+)?/",
    "text": r"(?:^|/)(?:tips_)?text_encoder(?:_\d+)?/",
    "heads": r"(?:^|/)(?:dino_head|ibot_head|contrastive_head)(?:_\d+)?/",
}


def layer_lr_multiplier(
    path,
    layer_decay,
    num_layers,
    layer_pattern=DEFAULT_LAYER_PATTERN,
    embedding_pattern=DEFAULT_EMBEDDING_PATTERN,
):
    """Learning-rate multiplier of the variable at `path` (see module doc)."""
    if layer_decay == 1.0:
        return 1.0
    match = re.search(layer_pattern, path)
    if match is not None:
        layer_id = int(match.group(1)) + 1
    elif re.search(embedding_pattern, path) is not None:
        layer_id = 0
    else:
        layer_id = num_layers + 1
    return float(layer_decay) ** (num_layers + 1 - layer_id)


@keras.saving.register_keras_serializable(package="keras_tips")
class TIPSAdamW(keras.optimizers.AdamW):
    """`keras.optimizers.AdamW` with layer-wise learning-rate decay, weight
    decay exclusions stored in its config, and an optional cosine weight
    decay schedule.

    Args:
        learning_rate: float or `LearningRateSchedule`.
        weight_decay: float. Weight decay at step 0.
        final_weight_decay: optional float. If set, the weight decay follows
            a half-cosine from `weight_decay` to it over `weight_decay_steps`
            optimizer steps (DINOv2: 0.04 -> 0.2).
        weight_decay_steps: int. Length of that schedule.
        layer_decay: float in (0, 1]. 1 disables layer-wise decay.
        num_layers: optional int. Number of blocks; by default the largest
            block index matched by `layer_pattern` plus one.
        layer_pattern: regex with one group, the block index, searched in
            `variable.path`.
        embedding_pattern: regex for the variables below the first block.
        no_weight_decay_names: regexes searched in `variable.name`; matching
            variables get no weight decay (`exclude_from_weight_decay`).
        freeze_last_layer_steps: int. Optimizer steps during which the
            variables matching `last_layer_pattern` do not move (0: off).
        last_layer_pattern: regex searched in `variable.path`.
        module_clipnorm: optional dict, module name -> largest L2 norm of
            that module's gradients, e.g. `{"image": 3.0, "heads": 3.0}`.
            Modules left out are not clipped (by this).
        module_patterns: dict, module name -> regex searched in
            `variable.path` (default: `"image"`, `"text"`, `"heads"`).
        **kwargs: `keras.optimizers.AdamW` arguments (`beta_1`, `beta_2`,
            `epsilon`, `global_clipnorm`, ...).

    Example:
    ```python
    schedule = WarmupCosineDecay(1e-3, total_steps=1000, warmup_steps=100)
    optimizer = TIPSAdamW(
        learning_rate=schedule,
        weight_decay=0.04,
        final_weight_decay=0.2,
        weight_decay_steps=1000,
        layer_decay=0.9,
        global_clipnorm=3.0,
    )
    ```
    """

    def __init__(
        self,
        learning_rate=0.001,
        weight_decay=0.04,
        final_weight_decay=None,
        weight_decay_steps=0,
        layer_decay=1.0,
        num_layers=None,
        layer_pattern=DEFAULT_LAYER_PATTERN,
        embedding_pattern=DEFAULT_EMBEDDING_PATTERN,
        no_weight_decay_names=NO_WEIGHT_DECAY_NAMES,
        freeze_last_layer_steps=0,
        last_layer_pattern=DEFAULT_LAST_LAYER_PATTERN,
        module_clipnorm=None,
        module_patterns=None,
        **kwargs,
    ):
        super().__init__(
            learning_rate=learning_rate, weight_decay=weight_decay, **kwargs
        )
        if int(freeze_last_layer_steps) < 0:
            raise ValueError(
                "`freeze_last_layer_steps` must be >= 0. Received: "
                f"{freeze_last_layer_steps}"
            )
        self.freeze_last_layer_steps = int(freeze_last_layer_steps)
        self.last_layer_pattern = last_layer_pattern
        self.module_patterns = dict(module_patterns or DEFAULT_MODULE_PATTERNS)
        self.module_clipnorm = (
            None
            if not module_clipnorm
            else {str(k): float(v) for k, v in dict(module_clipnorm).items()}
        )
        for module, bound in (self.module_clipnorm or {}).items():
            if module not in self.module_patterns:
                raise ValueError(
                    f"`module_clipnorm` names the module {module!r}; the "
                    f"modules are {sorted(self.module_patterns)} (see "
                    "`module_patterns`)."
                )
            if not bound > 0:
                raise ValueError(
                    f"`module_clipnorm[{module!r}]` must be > 0. Received: "
                    f"{bound}"
                )
        if not 0.0 < float(layer_decay) <= 1.0:
            raise ValueError(
                f"`layer_decay` must be in (0, 1]. Received: {layer_decay}"
            )
        if re.compile(layer_pattern).groups < 1:
            raise ValueError(
                "`layer_pattern` needs a group capturing the block index. "
                f"Received: {layer_pattern!r}"
            )
        self.final_weight_decay = (
            None if final_weight_decay is None else float(final_weight_decay)
        )
        self.weight_decay_steps = int(weight_decay_steps)
        self.layer_decay = float(layer_decay)
        self.num_layers = None if num_layers is None else int(num_layers)
        self.layer_pattern = layer_pattern
        self.embedding_pattern = embedding_pattern
        self.no_weight_decay_names = tuple(no_weight_decay_names or ())
        if self.no_weight_decay_names:
            self.exclude_from_weight_decay(
                var_names=list(self.no_weight_decay_names)
            )
        self._lr_multipliers = []

    def build(self, var_list):
        super().build(var_list)
        num_layers = self.num_layers
        if num_layers is None:
            matches = [re.search(self.layer_pattern, v.path) for v in var_list]
            indices = [int(m.group(1)) for m in matches if m is not None]
            num_layers = max(indices) + 1 if indices else 0
        self._resolved_num_layers = num_layers
        self._lr_multipliers = [
            layer_lr_multiplier(
                v.path,
                self.layer_decay,
                num_layers,
                self.layer_pattern,
                self.embedding_pattern,
            )
            for v in var_list
        ]
        self._frozen_early = [
            self.freeze_last_layer_steps > 0
            and re.search(self.last_layer_pattern, v.path) is not None
            for v in var_list
        ]
        self._modules = {}
        for module in self.module_clipnorm or {}:
            members = [
                index
                for index, v in enumerate(var_list)
                if re.search(self.module_patterns[module], v.path)
            ]
            if not members:
                raise ValueError(
                    f"No trainable variable is in the module {module!r} of "
                    f"`module_clipnorm` (pattern "
                    f"{self.module_patterns[module]!r}); the paths are like "
                    f"{[v.path for v in var_list[:3]]}."
                )
            self._modules[module] = members

    def _is_frozen(self, variable):
        """Whether `variable` is one whose update waits for the end of
        `freeze_last_layer_steps` (a Python bool)."""
        if not self.freeze_last_layer_steps:
            return False
        return self._frozen_early[self._get_variable_index(variable)]

    def _still_frozen(self):
        return ops.less(self.iterations, self.freeze_last_layer_steps)

    def _backend_apply_gradients(self, grads, trainable_variables):
        grads = list(grads)
        if self.freeze_last_layer_steps:
            frozen = self._still_frozen()
            grads = [
                ops.where(frozen, ops.zeros_like(g), g)
                if self._is_frozen(v)
                else g
                for g, v in zip(grads, trainable_variables)
            ]
        if self.module_clipnorm:
            grads = self._clip_modules(grads, trainable_variables)
        super()._backend_apply_gradients(grads, trainable_variables)

    def _clip_modules(self, grads, trainable_variables):
        """Scales each module's gradients to a joint norm <= its bound
        (`bound / max(norm, bound)`, as `keras`' global clipping)."""
        position = {
            self._get_variable_index(v): i
            for i, v in enumerate(trainable_variables)
        }
        grads = list(grads)
        for module, bound in self.module_clipnorm.items():
            members = [position[i] for i in self._modules[module] if i in position]
            if not members:
                continue
            squares = [
                ops.sum(ops.square(ops.cast(grads[i], "float32")))
                for i in members
            ]
            norm = ops.sqrt(sum(squares[1:], squares[0]))
            scale = bound / ops.maximum(norm, bound)
            for i in members:
                grads[i] = grads[i] * ops.cast(scale, grads[i].dtype)
        return grads

    def lr_multiplier(self, variable):
        """The layer-wise learning-rate multiplier of a built variable."""
        if not self._lr_multipliers:
            return 1.0
        return self._lr_multipliers[self._get_variable_index(variable)]

    def current_weight_decay(self):
        """The weight decay at the current optimizer step (float32 tensor)."""
        if self.final_weight_decay is None:
            return ops.cast(self.weight_decay, "float32")
        return cosine_schedule(
            self.iterations,
            self.weight_decay,
            self.final_weight_decay,
            self.weight_decay_steps,
        )

    def update_step(self, gradient, variable, learning_rate):
        multiplier = self.lr_multiplier(variable)
        if multiplier != 1.0:
            learning_rate = learning_rate * multiplier
        super().update_step(gradient, variable, learning_rate)

    def _apply_weight_decay(self, variables):
        if self.weight_decay is None:
            return
        learning_rate = ops.cast(self.learning_rate, "float32")
        weight_decay = self.current_weight_decay()
        for variable in variables:
            if not self._use_weight_decay(variable):
                continue
            factor = learning_rate * weight_decay * self.lr_multiplier(variable)
            if self._is_frozen(variable):
                factor = ops.where(self._still_frozen(), 0.0, factor)
            factor = ops.cast(factor, variable.dtype)
            variable.assign(variable - variable * factor)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "final_weight_decay": self.final_weight_decay,
                "weight_decay_steps": self.weight_decay_steps,
                "layer_decay": self.layer_decay,
                "num_layers": self.num_layers,
                "layer_pattern": self.layer_pattern,
                "embedding_pattern": self.embedding_pattern,
                "no_weight_decay_names": list(self.no_weight_decay_names),
                "freeze_last_layer_steps": self.freeze_last_layer_steps,
                "last_layer_pattern": self.last_layer_pattern,
                "module_clipnorm": self.module_clipnorm,
                "module_patterns": self.module_patterns,
            }
        )
        return config


@dataclasses.dataclass
class OptimizerConfig:
    """Settings of `build_optimizer`.

    Attributes:
        peak_learning_rate: learning rate at the end of the warm-up.
        total_steps: int. Length of the run (the cosine ends there). None
            until set: a recipe sets it from `train.total_steps`; outside a
            recipe pass it (`build_optimizer(total_steps=...)`).
        warmup_steps: linear warm-up length.
        initial_learning_rate: learning rate at step 0.
        final_learning_rate: learning rate at `total_steps`.
        weight_decay: decoupled weight decay (at step 0).
        final_weight_decay: if set, cosine weight decay schedule to this
            value over `total_steps`.
        beta_1, beta_2, epsilon: Adam constants.
        global_clipnorm: clip the global gradient norm to this (None: off).
        layer_decay: layer-wise learning-rate decay (1.0: off).
        num_layers: blocks counted by layer decay (None: inferred).
        layer_pattern, embedding_pattern: see `TIPSAdamW`.
        no_weight_decay_names: variable-name regexes without weight decay.
        freeze_last_layer_steps: optimizer steps during which the student
            heads' prototypes do not move (0: off; DINOv2 freezes them for
            its first epoch).
        module_clipnorm: optional dict, `"image"` / `"text"` / `"heads"` ->
            largest L2 norm of that module's gradients (None: off).
    """

    peak_learning_rate: float = 1e-3
    total_steps: int | None = None
    warmup_steps: int = 0
    initial_learning_rate: float = 0.0
    final_learning_rate: float = 1e-6
    weight_decay: float = 0.04
    final_weight_decay: float | None = None
    beta_1: float = 0.9
    beta_2: float = 0.999
    epsilon: float = 1e-8
    global_clipnorm: float | None = 3.0
    layer_decay: float = 1.0
    num_layers: int | None = None
    layer_pattern: str = DEFAULT_LAYER_PATTERN
    embedding_pattern: str = DEFAULT_EMBEDDING_PATTERN
    no_weight_decay_names: tuple = NO_WEIGHT_DECAY_NAMES
    freeze_last_layer_steps: int = 0
    module_clipnorm: dict | None = None


def build_optimizer(config=None, **overrides):
    """Builds the pretraining optimizer.

    Args:
        config: an `OptimizerConfig`, a dict of its fields, or None
            (defaults).
        **overrides: fields replacing those of `config`.

    Returns:
        A `TIPSAdamW` with a `WarmupCosineDecay` learning rate.

    Example:
    ```python
    optimizer = build_optimizer(
        OptimizerConfig(peak_learning_rate=5e-4, total_steps=1000,
                        warmup_steps=100, layer_decay=0.9)
    )
    ```
    """
    if config is None:
        config = OptimizerConfig()
    elif isinstance(config, dict):
        config = OptimizerConfig(**config)
    elif not isinstance(config, OptimizerConfig):
        raise TypeError(
            "`config` must be an OptimizerConfig, a dict or None. "
            f"Received: {type(config).__name__}"
        )
    if overrides:
        config = dataclasses.replace(config, **overrides)
    if config.total_steps is None:
        raise ValueError(
            "The optimizer needs `total_steps` (the length of its schedules): "
            "pass `build_optimizer(config, total_steps=...)` or set "
            "`OptimizerConfig.total_steps` (a recipe sets it from "
            "train.total_steps)."
        )
    schedule = WarmupCosineDecay(
        peak_learning_rate=config.peak_learning_rate,
        total_steps=config.total_steps,
        warmup_steps=config.warmup_steps,
        initial_learning_rate=config.initial_learning_rate,
        final_learning_rate=config.final_learning_rate,
    )
    return TIPSAdamW(
        learning_rate=schedule,
        weight_decay=config.weight_decay,
        final_weight_decay=config.final_weight_decay,
        weight_decay_steps=config.total_steps,
        layer_decay=config.layer_decay,
        num_layers=config.num_layers,
        layer_pattern=config.layer_pattern,
        embedding_pattern=config.embedding_pattern,
        no_weight_decay_names=config.no_weight_decay_names,
        beta_1=config.beta_1,
        beta_2=config.beta_2,
        epsilon=config.epsilon,
        global_clipnorm=config.global_clipnorm,
        freeze_last_layer_steps=config.freeze_last_layer_steps,
        module_clipnorm=config.module_clipnorm,
    )
