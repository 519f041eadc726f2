"""`TIPSDPTHead`: a DPT decoder for dense prediction from TIPS features."""

import datetime
import json
import os

import keras
import numpy as np
from keras import ops

from keras_tips.atomic_files import write_atomically
from keras_tips.conversion.dpt_preset_cache import resolve_dpt_preset
from keras_tips.layers.dpt import DPTFusionBlock
from keras_tips.layers.dpt import DPTReassembleBlocks
from keras_tips.layers.dpt import depth_bin_centers
from keras_tips.layers.dpt import expected_depth
from keras_tips.layers.interpolation import resize_bicubic
from keras_tips.layers.interpolation import resize_bilinear
from keras_tips.models.tips_dpt_presets import DEFAULT_MAX_DEPTH
from keras_tips.models.tips_dpt_presets import DEFAULT_MIN_DEPTH
from keras_tips.models.tips_dpt_presets import DEFAULT_NUM_OUTPUTS
from keras_tips.models.tips_dpt_presets import DPT_TASKS
from keras_tips.models.tips_dpt_presets import TIPS_DPT_PRESETS

NUM_LEVELS = 4
CONFIG_FILE = "config.json"
METADATA_FILE = "metadata.json"
WEIGHTS_FILE = "model.weights.h5"


def normalize_normals(normals, image_size=None):
    """Unit surface normals from a normals head's raw output (NumPy in, out).

    Without `image_size`: the raw vectors divided by their L2 norm (as
    `F.normalize`, with the norm floored at 1e-12). With `image_size`: the
    official notebook's display processing of the head's native-resolution
    output: normalise, upsample bicubically (`align_corners=False`) to
    `image_size`, normalise again.

    Args:
        normals: float (B, H, W, 3) or (H, W, 3) raw normals.
        image_size: optional (height, width) to upsample to.

    Returns:
        A float32 NumPy array of unit vectors, (B, height, width, 3) (or
        without the batch axis when `normals` had none).

    Example:
    ```python
    raw = model.predict_dense(images, head, native_resolution=True)
    unit = keras_tips.normalize_normals(raw, image_size=images.shape[1:3])
    ```
    """
    normals = np.asarray(normals, dtype="float32")
    unbatched = normals.ndim == 3
    if unbatched:
        normals = normals[None]
    if normals.ndim != 4 or normals.shape[-1] != 3:
        raise ValueError(
            "Normals must have shape (batch, height, width, 3) or (height, "
            f"width, 3); received {normals.shape}."
        )
    x = _unit_vectors(ops.convert_to_tensor(normals))
    if image_size is not None:
        x = _unit_vectors(resize_bicubic(x, tuple(int(s) for s in image_size)))
    x = ops.convert_to_numpy(x).astype("float32")
    return x[0] if unbatched else x


def _unit_vectors(x):
    norm = ops.sqrt(ops.sum(ops.square(x), axis=-1, keepdims=True))
    return x / ops.maximum(norm, 1e-12)


@keras.saving.register_keras_serializable(package="keras_tips")
class TIPSDPTHead(keras.Model):
    """A DPT decoder turning four levels of TIPS image features into a dense
    map: segmentation logits, depth or surface normals.

    The head takes, for each of its four levels, the `(cls, patch_map)`
    pair of one image-tower block after the final LayerNorm: the CLS1 token
    `(B, D)` and the patch tokens as a map `(B, h, w, D)`, as the official
    decoders receive them. `encoder_layers` records which blocks feed the
    levels (`TIPSModel.predict_dense` takes them from the image tower). The
    DPT body (`DPTReassembleBlocks`, four `DPTFusionBlock`s from the coarsest
    level down, a 3x3 convolution) produces a map of `channels` features at
    16 * ceil(g / 2) pixels per side of a g-patch side, then a dense layer
    gives `num_outputs` channels per pixel:

    - `"segmentation"`: class logits;
    - `"depth"`: bin scores turned into depth as the official decoder does,
      p = (relu(s) + min_depth) / sum_bins(relu(s) + min_depth) and
      depth = sum_bins p * linspace(min_depth, max_depth, num_outputs),
      one channel;
    - `"normals"`: the raw (unnormalised) 3-vectors; see
      `keras_tips.normalize_normals`.

    With `image_size`, the map is resized bilinearly (`align_corners=False`,
    no antialiasing) to that size (depth after the expectation).

    A preset is a folder with `config.json` (the serialised head),
    `metadata.json` and `model.weights.h5`, as a keras-hub backbone preset.
    The head is a subclassed `keras.Model` rather than a functional keras-hub
    `Backbone`: its input is a list of pairs of varying spatial size and its
    call takes the output size as a Python argument, and keras-hub turns
    every `Backbone` class into a functional one once a functional backbone
    (the TIPS encoders) is built. Every weight is created in `__init__`, so a
    head is ready to load weights (or to be saved with `model.save`) as soon
    as it is constructed.

    Args:
        task: `"segmentation"`, `"depth"` or `"normals"`.
        input_embed_dim: int. Width D of the image-tower features.
        encoder_layers: four ints. The image-tower blocks (0-based) whose
            outputs feed levels 0 to 3.
        num_outputs: int. Classes (segmentation) or depth bins; 3 for
            normals. Defaults to the released heads' 150 / 256 / 3.
        channels: int. Width of the fusion path (256 in the release).
        post_process_channels: four ints, the width of each level after
            reassembly. Defaults to (D / 8, D / 4, D / 2, D).
        readout_type: `"project"` (mix the CLS token into every patch, as
            released) or `"ignore"`.
        output_activation: bool. ReLU after the last 3x3 convolution (not in
            the released heads).
        min_depth: float. Depth task: first bin centre and probability
            floor (0.001).
        max_depth: float. Depth task: last bin centre (10.0).
        dtype: optional dtype policy.
        **kwargs: standard `keras.Model` arguments (`name`, `trainable`).

    Example:
    ```python
    head = keras_tips.TIPSDPTHead.from_preset("tips_v2_b14_depth_dpt")
    model = keras_tips.TIPSModel.from_preset("tips_v2_oss_b14")
    depth = model.predict_dense(images, head)  # (B, H, W, 1), metres

    # Or feed features directly: four (cls (B, D), patch map (B, h, w, D)).
    maps = head(features, image_size=(448, 448))
    ```
    """

    def __init__(
        self,
        task,
        input_embed_dim,
        encoder_layers,
        num_outputs=None,
        channels=256,
        post_process_channels=None,
        readout_type="project",
        output_activation=False,
        min_depth=None,
        max_depth=None,
        dtype=None,
        **kwargs,
    ):
        if task not in DPT_TASKS:
            raise ValueError(
                f"`task` must be one of {DPT_TASKS}; received {task!r}."
            )
        input_embed_dim = int(input_embed_dim)
        encoder_layers = tuple(int(i) for i in encoder_layers)
        if len(encoder_layers) != NUM_LEVELS or min(encoder_layers) < 0:
            raise ValueError(
                "`encoder_layers` must give four image-tower blocks (0-based) "
                f"for the four DPT levels; received {list(encoder_layers)}."
            )
        if num_outputs is None:
            num_outputs = DEFAULT_NUM_OUTPUTS[task]
        num_outputs = int(num_outputs)
        if task == "normals" and num_outputs != 3:
            raise ValueError(
                f"A normals head predicts 3 values per pixel; received "
                f"num_outputs={num_outputs}."
            )
        if post_process_channels is None:
            post_process_channels = tuple(
                input_embed_dim // f for f in (8, 4, 2, 1)
            )
        if task == "depth":
            min_depth = DEFAULT_MIN_DEPTH if min_depth is None else float(min_depth)
            max_depth = DEFAULT_MAX_DEPTH if max_depth is None else float(max_depth)
            if not 0 < min_depth < max_depth:
                raise ValueError(
                    "Depth bins need 0 < min_depth < max_depth; received "
                    f"min_depth={min_depth}, max_depth={max_depth}."
                )
        elif min_depth is not None or max_depth is not None:
            raise ValueError(
                f"`min_depth` and `max_depth` apply to depth heads only; this "
                f"is a {task} head."
            )
        super().__init__(dtype=dtype, **kwargs)

        # === Config ===
        self.task = task
        self.input_embed_dim = input_embed_dim
        self.encoder_layers = encoder_layers
        self.num_outputs = num_outputs
        self.channels = int(channels)
        self.readout_type = readout_type
        self.output_activation = bool(output_activation)
        self.min_depth = min_depth
        self.max_depth = max_depth

        # === Layers ===
        policy = self.dtype_policy
        self.reassemble = DPTReassembleBlocks(
            input_embed_dim,
            post_process_channels,
            readout_type=readout_type,
            dtype=policy,
            name="reassemble",
        )
        self.post_process_channels = self.reassemble.post_process_channels
        self.convs = [
            keras.layers.Conv2D(
                self.channels, 3, padding="same", use_bias=False,
                dtype=policy, name=f"convs_{i}",
            )
            for i in range(NUM_LEVELS)
        ]
        self.fusion_blocks = [
            DPTFusionBlock(
                self.channels, has_residual=i > 0, dtype=policy,
                name=f"fusion_blocks_{i}",
            )
            for i in range(NUM_LEVELS)
        ]
        self.project = keras.layers.Conv2D(
            self.channels, 3, padding="same", dtype=policy, name="project"
        )
        self.head = keras.layers.Dense(num_outputs, dtype=policy, name="head")
        self._bin_centers = None
        if task == "depth":
            self._bin_centers = depth_bin_centers(min_depth, max_depth, num_outputs)

        # === Weights ===
        self.reassemble.build()
        for conv, width in zip(self.convs, self.post_process_channels):
            conv.build((None, None, None, width))
        features = (None, None, None, self.channels)
        for block in self.fusion_blocks:
            block.build(features)
        self.project.build(features)
        self.head.build(features)
        self.built = True

    @classmethod
    def from_preset(cls, preset, load_weights=True):
        """Loads a DPT head from a registered name or a preset directory.

        A registered name (see `TIPSDPTHead.presets_available()`) is fetched
        from the official release and converted on first use, then cached.

        Args:
            preset: a registered name or a preset directory.
            load_weights: bool. Whether to load the weights (else they keep
                their random initial values).

        Returns:
            A `TIPSDPTHead`.
        """
        preset = resolve_dpt_preset(preset, cls)
        required = (CONFIG_FILE, WEIGHTS_FILE) if load_weights else (CONFIG_FILE,)
        missing = [
            name for name in required if not os.path.isfile(os.path.join(preset, name))
        ]
        if missing:
            raise FileNotFoundError(
                f"The DPT head preset {preset!r} is incomplete: missing "
                f"{', '.join(missing)}. Re-create it with `head.save_to_preset` "
                "or `keras_tips.convert_dpt_checkpoint`."
            )
        path = os.path.join(preset, CONFIG_FILE)
        try:
            with open(path, encoding="utf-8") as f:
                config = json.load(f)
        except (OSError, ValueError) as error:
            raise ValueError(
                f"The preset file {path!r} is not valid JSON ({error}). Is the "
                "file complete?"
            ) from error
        if not isinstance(config, dict) or config.get("class_name") != cls.__name__:
            found = config.get("class_name") if isinstance(config, dict) else None
            raise ValueError(
                f"The preset {preset!r} does not hold a {cls.__name__} (its "
                f"config.json describes {found!r}). Load an encoder preset "
                "with `TIPSModel.from_preset`."
            )
        head = keras.saving.deserialize_keras_object(config)
        if load_weights:
            path = os.path.join(preset, WEIGHTS_FILE)
            try:
                head.load_weights(path)
            except Exception as error:
                raise OSError(
                    f"Could not load the weights file {path!r} into the DPT "
                    f"head of {os.path.join(preset, CONFIG_FILE)!r} (damaged, "
                    f"or from another head?): {error}"
                ) from error
            for variable in head.weights:
                if not np.isfinite(ops.convert_to_numpy(variable)).all():
                    raise ValueError(
                        f"The weights file {path!r} holds NaN or infinite "
                        f"values (in {variable.path!r})."
                    )
        return head

    def save_to_preset(self, preset_dir):
        """Saves the head as a preset directory (`config.json`,
        `metadata.json`, `model.weights.h5`) for `TIPSDPTHead.from_preset`.

        Args:
            preset_dir: str. The folder to write (created if missing).
        """
        os.makedirs(preset_dir, exist_ok=True)
        config = keras.saving.serialize_keras_object(self)
        for key in ("build_config", "compile_config"):
            config.pop(key, None)
        metadata = {
            "keras_version": keras.version(),
            "parameter_count": self.count_params(),
            "date_saved": datetime.datetime.now().strftime("%Y-%m-%d@%H:%M:%S"),
        }
        write_atomically(
            os.path.join(preset_dir, CONFIG_FILE), json.dumps(config, indent=4)
        )
        write_atomically(
            os.path.join(preset_dir, METADATA_FILE), json.dumps(metadata, indent=4)
        )
        self.save_weights(os.path.join(preset_dir, WEIGHTS_FILE))

    @staticmethod
    def presets_available():
        """Names of the registered official DPT heads."""
        return sorted(TIPS_DPT_PRESETS)

    # --- Forward ----------------------------------------------------------

    def _check_features(self, features):
        if not isinstance(features, (list, tuple)) or len(features) != NUM_LEVELS:
            raise ValueError(
                f"A DPT head takes a list of {NUM_LEVELS} (cls, patch_map) "
                f"pairs, one per level; received {type(features).__name__} "
                f"of length {len(features) if hasattr(features, '__len__') else '?'}."
            )
        pairs = []
        for level, pair in enumerate(features):
            if not isinstance(pair, (list, tuple)) or len(pair) != 2:
                raise ValueError(
                    f"Level {level} must be a (cls, patch_map) pair; received "
                    f"{type(pair).__name__}."
                )
            cls_token, patches = pair
            if len(cls_token.shape) != 2 or len(patches.shape) != 4:
                raise ValueError(
                    f"Level {level} must hold a CLS token (B, D) and a patch "
                    f"map (B, h, w, D), channels last; received shapes "
                    f"{tuple(cls_token.shape)} and {tuple(patches.shape)}."
                )
            dims = {cls_token.shape[-1], patches.shape[-1]} - {None}
            if dims != {self.input_embed_dim}:
                raise ValueError(
                    f"Level {level} has features of width "
                    f"{sorted(dims)}; this head takes width "
                    f"{self.input_embed_dim}."
                )
            pairs.append((cls_token, patches))
        return pairs

    def call(self, features, image_size=None):
        """Decodes four levels of features into a dense NHWC map.

        Args:
            features: four `(cls, patch_map)` pairs: `cls` (B, D) and
                `patch_map` (B, h, w, D), from the blocks `encoder_layers`.
            image_size: optional (height, width) to resize the output to
                (bilinear, `align_corners=False`); by default the map has
                the DPT's own size, 16 * ceil(g / 2) per side.

        Returns:
            (B, H, W, C): C = `num_outputs` class logits, 1 depth channel, or
            3 normal components.
        """
        maps = self.reassemble(self._check_features(features))
        maps = [conv(x) for conv, x in zip(self.convs, maps)]
        x = self.fusion_blocks[0](maps[-1])
        for level in range(1, NUM_LEVELS):
            x = self.fusion_blocks[level](x, maps[-(level + 1)])
        x = self.project(x)
        if self.output_activation:
            x = ops.relu(x)
        x = self.head(x)
        if self.task == "depth":
            x = expected_depth(x, self._bin_centers, self.min_depth)
        if image_size is not None:
            x = resize_bilinear(x, image_size, align_corners=False)
        return x

    def compute_output_spec(self, features, image_size=None):
        """The output's shape, from the shapes alone (no trace of `call`).

        A symbolic trace would turn `image_size` into traced values, which
        the resizing cannot use as sizes; the shape follows from the
        architecture instead: 16 * ceil(g / 2) per side of a g-patch side,
        or `image_size`.
        """
        pairs = self._check_features(features)
        patches = pairs[-1][1]
        if image_size is None:
            image_size = tuple(
                None if side is None else 16 * ((side + 1) // 2)
                for side in patches.shape[1:3]
            )
        else:
            image_size = tuple(int(side) for side in image_size)
        return keras.KerasTensor(
            (patches.shape[0], *image_size, self.output_channels),
            dtype=self.compute_dtype,
        )

    @property
    def bin_centers(self):
        """Depth bin centres (a float32 NumPy array), or None."""
        return None if self._bin_centers is None else self._bin_centers.copy()

    @property
    def output_channels(self):
        """Channels of the output map: classes, 1 (depth) or 3 (normals)."""
        return 1 if self.task == "depth" else self.num_outputs

    def get_config(self):
        config = {
            "name": self.name,
            "trainable": self.trainable,
            "dtype": keras.dtype_policies.serialize(self.dtype_policy),
        }
        config.update(
            {
                "task": self.task,
                "input_embed_dim": self.input_embed_dim,
                "encoder_layers": list(self.encoder_layers),
                "num_outputs": self.num_outputs,
                "channels": self.channels,
                "post_process_channels": list(self.post_process_channels),
                "readout_type": self.readout_type,
                "output_activation": self.output_activation,
                "min_depth": self.min_depth,
                "max_depth": self.max_depth,
            }
        )
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        if isinstance(config.get("dtype"), dict):
            config["dtype"] = keras.dtype_policies.deserialize(config["dtype"])
        return cls(**config)
