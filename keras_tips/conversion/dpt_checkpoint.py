"""Reads the official TIPS DPT decoder checkpoints into a `TIPSDPTHead`.

Two layouts are read, both as flat `.npz` archives (a `.zip` of `.npy`
arrays, as released, is one), without pickle:

- Scenic/Flax, as released (`<model>_<task>_dpt.zip`): keys such as
  `decoder/dpt/reassemble_blocks/out_projection_0/kernel` and
  `decoder/pixel_segmentation/kernel`; convolution kernels (H, W, in, out),
  dense kernels (in, out).
- PyTorch, as the official `load_decoder_weights` also accepts: the
  `Decoder` state-dict keys (`dpt.reassemble.out_projections.0.weight`,
  `head.weight`; the legacy names without `dpt.` and with a task-named head
  too), convolution kernels (out, in, H, W), dense kernels (out, in).

The transposed convolutions (the 4x and 2x upsampling of levels 0 and 1)
need care: Flax applies their kernels without the 180-degree spatial flip
of PyTorch's and Keras' transposed convolutions, so the kernels are flipped
on conversion. The official loader flips them in the PyTorch layout as well
(those files keep Flax's orientation), and so does this converter.

Sizes are inferred from the arrays; the structure is the official
decoders' (a "project" readout, no activation after the last convolution).
Every array must be used exactly once and every shape must match: a
missing, unexpected or mis-shaped array fails with a message that names it.

The head class is an argument (as in keras-hub's preset loaders), so that
`TIPSDPTHead.from_preset` can convert a registered head through this module
without an import cycle; `keras_tips.conversion.convert` binds it to
`TIPSDPTHead` for the public API (`keras_tips.convert_dpt_checkpoint`).
"""

import numpy as np

from keras_tips.atomic_files import check_output_dir
from keras_tips.atomic_files import save_preset_atomically
from keras_tips.conversion.official_checkpoint import read_npz
from keras_tips.errors import CheckpointError
from keras_tips.layers.dpt import depth_bin_centers
from keras_tips.models.tips_dpt_presets import DEFAULT_MAX_DEPTH
from keras_tips.models.tips_dpt_presets import DEFAULT_MIN_DEPTH
from keras_tips.models.tips_dpt_presets import DPT_TASKS
from keras_tips.models.tips_dpt_presets import TIPS_DPT_PRESETS

SCENIC = "scenic"
PYTORCH = "pytorch"
LAYOUTS = (SCENIC, PYTORCH)
_LAYOUT_NAMES = {SCENIC: "Scenic/Flax", PYTORCH: "PyTorch"}

# Scenic names of the task head (a dense layer) and the task they predict.
# A depth *regression* head (one output, no bins) is not a released head.
SCENIC_HEADS = {
    "pixel_segmentation": "segmentation",
    "segmentation_head": "segmentation",
    "pixel_depth_classif": "depth",
    "pixel_normals": "normals",
    "pixel_depth_regress": None,
}
# The head each task is exported under.
SCENIC_HEAD_OF_TASK = {
    "segmentation": "pixel_segmentation",
    "depth": "pixel_depth_classif",
    "normals": "pixel_normals",
}
# Legacy PyTorch head prefixes the official loader maps to `head.`.
PYTORCH_LEGACY_HEADS = tuple(f"{name}." for name in SCENIC_HEADS)
_HEAD = "<head>"  # Placeholder for the head's name in canonical Scenic keys.

# How each kind of weight is laid out in each file layout, as a pair of
# functions: file array -> Keras array, Keras array -> file array.
_LAYOUT_MAPS = {
    (SCENIC, "bias"): (lambda w: w, lambda w: w),
    (SCENIC, "dense"): (lambda w: w, lambda w: w),
    (SCENIC, "conv"): (lambda w: w, lambda w: w),
    # Flax (H, W, in, out), unflipped -> Keras (H, W, out, in), flipped.
    (SCENIC, "conv_transpose"): (
        lambda w: np.transpose(w[::-1, ::-1], (0, 1, 3, 2)),
        lambda w: np.transpose(w, (0, 1, 3, 2))[::-1, ::-1],
    ),
    (PYTORCH, "bias"): (lambda w: w, lambda w: w),
    (PYTORCH, "dense"): (np.transpose, np.transpose),
    (PYTORCH, "conv"): (
        lambda w: np.transpose(w, (2, 3, 1, 0)),
        lambda w: np.transpose(w, (3, 2, 0, 1)),
    ),
    # PyTorch (in, out, H, W) in Flax's orientation -> Keras, flipped.
    (PYTORCH, "conv_transpose"): (
        lambda w: np.transpose(w[:, :, ::-1, ::-1], (2, 3, 1, 0)),
        lambda w: np.transpose(w, (3, 2, 0, 1))[:, :, ::-1, ::-1],
    ),
}


def _layer_pairs(layer, scenic, pytorch, kind):
    """(variable, canonical Scenic key, canonical PyTorch key, kind) of a
    layer's kernel and, if it has one, its bias."""
    pairs = [(layer.kernel, f"{scenic}/kernel", f"{pytorch}.weight", kind)]
    if layer.use_bias:
        pairs.append((layer.bias, f"{scenic}/bias", f"{pytorch}.bias", "bias"))
    return pairs


def dpt_weight_map(head):
    """Pairs each variable of a `TIPSDPTHead` with its checkpoint arrays.

    Keys are canonical: Scenic keys without `decoder/` and `dpt/` (the head
    as `<head>/...`), PyTorch keys without `dpt.`.

    Args:
        head: a `TIPSDPTHead`.

    Returns:
        A list of (variable, Scenic key, PyTorch key, kind) tuples, kind one
        of `"dense"`, `"conv"`, `"conv_transpose"`, `"bias"`.
    """
    reassemble = head.reassemble
    pairs = []
    for i in range(4):
        if reassemble.readout_type == "project":
            pairs += _layer_pairs(
                reassemble.readout_projects[i],
                f"reassemble_blocks/readout_projects_{i}",
                f"reassemble.readout_projects.{i}",
                "dense",
            )
        pairs += _layer_pairs(
            reassemble.out_projections[i],
            f"reassemble_blocks/out_projection_{i}",
            f"reassemble.out_projections.{i}",
            "conv",
        )
        resize = reassemble.resize_layers[i]
        if resize is not None:
            pairs += _layer_pairs(
                resize,
                f"reassemble_blocks/resize_layers_{i}",
                f"reassemble.resize_layers.{i}",
                "conv_transpose" if i < 2 else "conv",
            )
    for i, conv in enumerate(head.convs):
        pairs += _layer_pairs(conv, f"convs_{i}", f"convs.{i}", "conv")
    for i, block in enumerate(head.fusion_blocks):
        # Scenic numbers the residual units in creation order: the skip
        # level's unit (blocks 1-3 only) first, then the main unit.
        units = [("main_unit", block.main_unit)]
        if block.residual_unit is not None:
            units.insert(0, ("residual_unit", block.residual_unit))
        for number, (name, unit) in enumerate(units):
            for conv in ("conv1", "conv2"):
                pairs += _layer_pairs(
                    getattr(unit, conv),
                    f"fusion_blocks_{i}/PreActResidualConvUnit_{number}/{conv}",
                    f"fusion_blocks.{i}.{name}.{conv}",
                    "conv",
                )
        pairs += _layer_pairs(
            block.out_conv,
            f"fusion_blocks_{i}/Conv_0",
            f"fusion_blocks.{i}.out_conv",
            "conv",
        )
    pairs += _layer_pairs(head.project, "project", "project", "conv")
    pairs += _layer_pairs(head.head, _HEAD, "head", "dense")
    return pairs


class DPTCheckpoint:
    """The arrays of a DPT checkpoint, under canonical keys.

    Attributes:
        path: str. The file read.
        layout: `"scenic"` or `"pytorch"`.
        arrays: dict canonical key -> array.
        file_keys: dict canonical key -> the key in the file.
        head_name: Scenic head name (e.g. `"pixel_normals"`), the legacy
            PyTorch head prefix, or None (`head.*`).
        bin_centers: the `bin_centers` array of a PyTorch depth checkpoint,
            or None.
    """

    def __init__(self, path):
        self.path = path
        state = read_npz(path, "DPT checkpoint")
        if not state:
            raise CheckpointError(f"The DPT checkpoint {path!r} holds no arrays.")
        self.layout = SCENIC if any("/" in key for key in state) else PYTORCH
        self.bin_centers = None
        self.head_name = None
        self.arrays = {}
        self.file_keys = {}
        self._body_prefix = ""
        self._head_prefix = ""
        if self.layout == SCENIC:
            self._read_scenic(state)
        else:
            self._read_pytorch(state)

    def _add(self, canonical, key, value):
        if canonical in self.arrays:
            raise CheckpointError(
                f"The DPT checkpoint {self.path!r} holds "
                f"{self.file_keys[canonical]!r} and {key!r}, two names for the "
                "same array."
            )
        self.arrays[canonical] = value
        self.file_keys[canonical] = key

    def _set_head(self, name):
        if self.head_name not in (None, name):
            raise CheckpointError(
                f"The DPT checkpoint {self.path!r} holds several task heads "
                f"({self.head_name}, {name}); a decoder has one."
            )
        self.head_name = name

    def _read_scenic(self, state):
        for key, value in state.items():
            name = key[len("decoder/"):] if key.startswith("decoder/") else key
            if key.startswith("decoder/"):
                self._head_prefix = "decoder/"
            top = name.split("/", 1)[0]
            if top in SCENIC_HEADS:
                self._set_head(top)
                self._add(_HEAD + name[len(top):], key, value)
            elif top == "dpt":
                self._body_prefix = self._head_prefix + "dpt/"
                self._add(name[len("dpt/"):], key, value)
            else:
                self._add(name, key, value)

    def _read_pytorch(self, state):
        for key, value in state.items():
            if key == "bin_centers":
                self.bin_centers = np.asarray(value, "float32")
                continue
            name = key
            if name.startswith("dpt."):
                self._body_prefix = "dpt."
                name = name[len("dpt."):]
            for legacy in PYTORCH_LEGACY_HEADS:
                if name.startswith(legacy):
                    self._set_head(legacy[:-1])
                    self._head_prefix = legacy
                    name = "head." + name[len(legacy):]
            if name.startswith("head.") and not self._head_prefix:
                self._head_prefix = "head."
            self._add(name, key, value)

    def display_key(self, canonical):
        """The name an array has (or would have) in this file."""
        if canonical in self.file_keys:
            return self.file_keys[canonical]
        if self.layout == SCENIC:
            if canonical.startswith(_HEAD):
                head = self.head_name or "<head>"
                return self._head_prefix + head + canonical[len(_HEAD):]
            return (self._body_prefix or self._head_prefix) + canonical
        if canonical.startswith("head."):
            prefix = self._head_prefix or "head."
            return prefix + canonical[len("head."):]
        return self._body_prefix + canonical

    def _key(self, scenic, pytorch):
        return scenic if self.layout == SCENIC else pytorch

    def dimension(self, scenic, pytorch, scenic_axis, pytorch_axis, rank, what):
        """One size read from an array, with a clear error when it is absent
        or not of the expected rank."""
        key = self._key(scenic, pytorch)
        if key not in self.arrays:
            raise CheckpointError(
                f"The DPT checkpoint {self.path!r} has no "
                f"{self.display_key(key)!r} (needed for {what}). Is it a "
                "TIPS DPT decoder checkpoint?"
            )
        shape = self.arrays[key].shape
        if len(shape) != rank:
            raise CheckpointError(
                f"{self.display_key(key)!r} in the DPT checkpoint {self.path!r} "
                f"has shape {tuple(shape)}; expected a {rank}-D array."
            )
        return int(shape[scenic_axis if self.layout == SCENIC else pytorch_axis])

    def task(self):
        """The task the head's name says, if it says one."""
        if self.head_name is None:
            return None
        return SCENIC_HEADS[self.head_name]


def default_encoder_layers(input_embed_dim):
    """The official image-tower blocks feeding the four levels, by width.

    Args:
        input_embed_dim: int. Width of the image tower.

    Returns:
        A list of four block indices, or None for a width no released head
        has.
    """
    for entry in TIPS_DPT_PRESETS.values():
        if entry["config"]["input_embed_dim"] == input_embed_dim:
            return list(entry["config"]["encoder_layers"])
    return None


def dpt_config_from_checkpoint(
    checkpoint, task, encoder_layers=None, min_depth=None, max_depth=None
):
    """Infers `TIPSDPTHead` arguments from a checkpoint's arrays.

    Args:
        checkpoint: a `DPTCheckpoint`.
        task: `"segmentation"`, `"depth"` or `"normals"`.
        encoder_layers: optional four block indices; by default those of the
            released heads of the same width.
        min_depth: optional float. Depth only; from `bin_centers` when the
            checkpoint has them, else 0.001.
        max_depth: optional float. As `min_depth` (10.0).

    Returns:
        A dict of `TIPSDPTHead` arguments.
    """
    if task not in DPT_TASKS:
        raise ValueError(f"`task` must be one of {DPT_TASKS}; received {task!r}.")
    if checkpoint.head_name == "pixel_depth_regress":
        raise CheckpointError(
            f"The DPT checkpoint {checkpoint.path!r} holds a depth regression "
            "head ('pixel_depth_regress'); only the released heads "
            "(segmentation, binned depth, normals) are supported."
        )
    named_task = checkpoint.task()
    if named_task is not None and named_task != task:
        raise CheckpointError(
            f"The DPT checkpoint {checkpoint.path!r} holds a {named_task} head "
            f"({checkpoint.head_name!r}), not a {task} one: pass "
            f"task={named_task!r} (--task {named_task})."
        )
    embed_dim = checkpoint.dimension(
        "reassemble_blocks/out_projection_0/kernel",
        "reassemble.out_projections.0.weight", 2, 1, 4,
        "the width of the image features",
    )
    post_process_channels = [
        checkpoint.dimension(
            f"reassemble_blocks/out_projection_{i}/kernel",
            f"reassemble.out_projections.{i}.weight", 3, 0, 4,
            f"the width of level {i}",
        )
        for i in range(4)
    ]
    channels = checkpoint.dimension(
        "convs_0/kernel", "convs.0.weight", 3, 0, 4, "the decoder's width"
    )
    num_outputs = checkpoint.dimension(
        f"{_HEAD}/kernel", "head.weight", 1, 0, 2, "the number of outputs"
    )
    if encoder_layers is None:
        encoder_layers = default_encoder_layers(embed_dim)
        if encoder_layers is None:
            raise CheckpointError(
                f"No released DPT head decodes an image tower of width "
                f"{embed_dim}: pass the four encoder blocks that feed its "
                "levels (encoder_layers / --layers i,j,k,l)."
            )
    config = {
        "task": task,
        "input_embed_dim": embed_dim,
        "encoder_layers": [int(i) for i in encoder_layers],
        "num_outputs": num_outputs,
        "channels": channels,
        "post_process_channels": post_process_channels,
        # The official decoders' readout (and the released heads'); its
        # arrays are then required like every other.
        "readout_type": "project",
    }
    if task == "depth":
        config.update(_depth_range(checkpoint, num_outputs, min_depth, max_depth))
    elif checkpoint.bin_centers is not None:
        raise CheckpointError(
            f"The DPT checkpoint {checkpoint.path!r} has 'bin_centers', which "
            f"only a depth head has, but task={task!r}."
        )
    elif min_depth is not None or max_depth is not None:
        raise ValueError(
            f"min_depth and max_depth apply to depth heads only; task={task!r}."
        )
    return config


def _depth_range(checkpoint, num_bins, min_depth, max_depth):
    centers = checkpoint.bin_centers
    if centers is None:
        return {
            "min_depth": DEFAULT_MIN_DEPTH if min_depth is None else min_depth,
            "max_depth": DEFAULT_MAX_DEPTH if max_depth is None else max_depth,
        }
    name = checkpoint.display_key("bin_centers")
    if centers.shape != (num_bins,):
        raise CheckpointError(
            f"{name!r} in the DPT checkpoint {checkpoint.path!r} has shape "
            f"{centers.shape}; the head predicts {num_bins} bins."
        )
    # The shortest decimals that round to the stored float32 values.
    min_depth = float(str(centers[0])) if min_depth is None else float(min_depth)
    max_depth = float(str(centers[-1])) if max_depth is None else float(max_depth)
    expected = depth_bin_centers(min_depth, max_depth, num_bins)
    if not np.allclose(centers, expected, rtol=1e-5, atol=1e-6):
        raise CheckpointError(
            f"{name!r} in the DPT checkpoint {checkpoint.path!r} are not "
            f"evenly spaced from min_depth={min_depth} to max_depth="
            f"{max_depth}, which the head computes them as."
        )
    return {"min_depth": min_depth, "max_depth": max_depth}


def load_dpt_weights(head, checkpoint):
    """Copies a checkpoint's arrays into a `TIPSDPTHead`, strictly.

    Args:
        head: a `TIPSDPTHead` of the checkpoint's sizes.
        checkpoint: a `DPTCheckpoint`.

    Raises:
        CheckpointError: naming every missing, unexpected or mis-shaped
            array.
    """
    layout = checkpoint.layout
    entries = []
    for variable, scenic, pytorch, kind in dpt_weight_map(head):
        key = scenic if layout == SCENIC else pytorch
        entries.append((variable, key, _LAYOUT_MAPS[(layout, kind)]))
    expected = {key for _, key, _ in entries}
    missing = sorted(
        checkpoint.display_key(k) for k in expected - set(checkpoint.arrays)
    )
    unexpected = sorted(
        checkpoint.display_key(k) for k in set(checkpoint.arrays) - expected
    )
    problems = []
    if missing:
        problems.append(f"missing arrays {missing}")
    if unexpected:
        problems.append(f"unexpected arrays {unexpected}")
    misshaped = []
    for variable, key, (_, to_file) in entries:
        if key not in checkpoint.arrays:
            continue
        want = to_file(np.zeros(tuple(variable.shape), "float32")).shape
        have = checkpoint.arrays[key].shape
        if tuple(have) != tuple(want):
            misshaped.append(
                f"{checkpoint.display_key(key)!r} has shape {tuple(have)}, "
                f"expected {tuple(want)}"
            )
    if misshaped:
        problems.append("mis-shaped arrays: " + "; ".join(misshaped))
    if problems:
        raise CheckpointError(
            f"The DPT checkpoint {checkpoint.path!r} ({_LAYOUT_NAMES[layout]} "
            f"layout) does not fit a {head.task} head of width "
            f"{head.input_embed_dim}: "
            + "; ".join(problems)
            + "."
        )
    for variable, key, (to_keras, _) in entries:
        value = np.asarray(checkpoint.arrays[key])
        if value.dtype.kind != "f":
            raise CheckpointError(
                f"{checkpoint.display_key(key)!r} in the DPT checkpoint "
                f"{checkpoint.path!r} is not a float array ({value.dtype})."
            )
        value = to_keras(value.astype("float32"))
        if not np.isfinite(value).all():
            raise CheckpointError(
                f"{checkpoint.display_key(key)!r} in the DPT checkpoint "
                f"{checkpoint.path!r} holds NaN or infinite values."
            )
        variable.assign(np.ascontiguousarray(value))


def export_dpt_state(head, layout=SCENIC):
    """The inverse of `load_dpt_weights`: a head's weights as checkpoint
    arrays under the official keys (`decoder/dpt/...` and
    `decoder/pixel_<task>/...`, or `dpt....` and `head.*`).

    Args:
        head: a `TIPSDPTHead`.
        layout: `"scenic"` or `"pytorch"`.

    Returns:
        A dict of key -> float32 array, ready for `np.savez`.
    """
    import keras

    if layout not in LAYOUTS:
        raise ValueError(f"`layout` must be one of {LAYOUTS}; received {layout!r}.")
    state = {}
    for variable, scenic, pytorch, kind in dpt_weight_map(head):
        value = keras.ops.convert_to_numpy(variable).astype("float32")
        value = np.ascontiguousarray(_LAYOUT_MAPS[(layout, kind)][1](value))
        if layout == PYTORCH:
            key = pytorch if pytorch.startswith("head.") else "dpt." + pytorch
        elif scenic.startswith(_HEAD):
            key = "decoder/" + SCENIC_HEAD_OF_TASK[head.task] + scenic[len(_HEAD):]
        else:
            key = "decoder/dpt/" + scenic
        state[key] = value
    return state


def build_head_from_checkpoint(
    head_class,
    checkpoint_path,
    task,
    encoder_layers=None,
    min_depth=None,
    max_depth=None,
):
    """Builds a DPT head holding the weights of an official checkpoint.

    Args:
        head_class: the head to build, called with the inferred
            configuration (`TIPSDPTHead`).
        checkpoint_path: path of the released `<model>_<task>_dpt.zip` (or
            any `.npz` in the Scenic or PyTorch layout).
        task: `"segmentation"`, `"depth"` or `"normals"`.
        encoder_layers: optional four image-tower blocks feeding the levels;
            by default those of the released head of the same width.
        min_depth: optional float, depth only (default 0.001, or the
            checkpoint's `bin_centers`).
        max_depth: optional float, depth only (default 10.0).

    Returns:
        A `head_class` instance.

    Raises:
        CheckpointError: the file is missing or unreadable, or an array is
            missing, unexpected or mis-shaped (each is named).
    """
    checkpoint = DPTCheckpoint(checkpoint_path)
    config = dpt_config_from_checkpoint(
        checkpoint, task, encoder_layers, min_depth, max_depth
    )
    head = head_class(**config)
    load_dpt_weights(head, checkpoint)
    return head


def convert_to_head_preset(
    head_class, checkpoint_path, task, output_dir, overwrite=False, **kwargs
):
    """Converts an official DPT checkpoint into a head preset directory,
    all or nothing (see `keras_tips.convert_dpt_checkpoint`).

    Args:
        head_class: the head to build (`TIPSDPTHead`).
        checkpoint_path: path of the checkpoint.
        task: `"segmentation"`, `"depth"` or `"normals"`.
        output_dir: str. Preset directory to create.
        overwrite: bool. Replace an existing `output_dir`.
        **kwargs: `encoder_layers`, `min_depth`, `max_depth` of
            `build_head_from_checkpoint`.

    Returns:
        The converted head.
    """
    output_dir = check_output_dir(output_dir, overwrite)
    head = build_head_from_checkpoint(head_class, checkpoint_path, task, **kwargs)
    save_preset_atomically(head, output_dir)
    return head
