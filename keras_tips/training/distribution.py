"""`keras.distribution` set-ups for TIPS: data parallel and model parallel.

With JAX, `keras.distribution` shards every variable and batch over a device
mesh and XLA's SPMD partitioner inserts the collectives. The contrastive loss
therefore sees the *global* batch with no gather written by hand: the
similarity matrix is computed on the sharded image and text embeddings as if
they were one array (tested against an unsharded run on 8 virtual CPU
devices in `tests/training/test_distribution.py`).
"""

import keras

BATCH_AXIS = "batch"
MODEL_AXIS = "model"


def get_layout_map(device_mesh, model_axis=MODEL_AXIS):
    """Tensor-parallel layouts for the TIPS towers and heads.

    Megatron-style: the first matmul of each pair (QKV, MLP in) is split along
    its output features, the second (attention out, MLP out) along its input
    features, so each block needs one reduction per pair. Embedding tables
    and prototype matrices are split along their large axis; everything else
    (norms, LayerScale, tokens, biases) is replicated.

    Args:
        device_mesh: a `keras.distribution.DeviceMesh` with a `model_axis`.
        model_axis: str. Name of the mesh axis that shards weights.

    Returns:
        A `keras.distribution.LayoutMap`.

    Example:
    ```python
    mesh = keras.distribution.DeviceMesh((2, 4), ["batch", "model"])
    distribution = keras.distribution.ModelParallel(
        layout_map=get_layout_map(mesh), batch_dim_name="batch"
    )
    keras.distribution.set_distribution(distribution)
    ```
    """
    layout_map = keras.distribution.LayoutMap(device_mesh)
    split_out = (None, model_axis)
    split_in = (model_axis, None)
    layout_map[r".*attn/qkv/kernel"] = split_out
    layout_map[r".*attn/proj/kernel"] = split_in
    layout_map[r".*mlp/fc1/kernel"] = split_out
    layout_map[r".*mlp/fc2/kernel"] = split_in
    layout_map[r".*mlp/w12/kernel"] = split_out
    layout_map[r".*mlp/w3/kernel"] = split_in
    layout_map[r".*token_embedding/embeddings"] = split_in
    layout_map[r".*head.*/prototypes"] = split_out
    return layout_map


def data_parallel(devices=None):
    """A `keras.distribution.DataParallel` over `devices` (default: all)."""
    return keras.distribution.DataParallel(devices=devices)


def model_parallel(model_parallel_size, devices=None):
    """A `ModelParallel` distribution on a (data, model) mesh.

    Args:
        model_parallel_size: int. Devices that share one model replica.
        devices: optional list of devices (default: all).
    """
    devices = devices or keras.distribution.list_devices()
    if len(devices) % model_parallel_size:
        raise ValueError(
            f"{len(devices)} devices cannot be split into groups of "
            f"model_parallel_size={model_parallel_size}."
        )
    mesh = keras.distribution.DeviceMesh(
        (len(devices) // model_parallel_size, model_parallel_size),
        [BATCH_AXIS, MODEL_AXIS],
        devices,
    )
    return keras.distribution.ModelParallel(
        layout_map=get_layout_map(mesh), batch_dim_name=BATCH_AXIS
    )
