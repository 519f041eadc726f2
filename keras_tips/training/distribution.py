"""`keras.distribution` set-ups for TIPS: data parallel and model parallel,
on one process or several.

With JAX, `keras.distribution` shards every variable and batch over a device
mesh and XLA's SPMD partitioner inserts the collectives. The contrastive loss
therefore sees the *global* batch with no gather written by hand: the
similarity matrix is computed on the sharded image and text embeddings as if
they were one array (tested against an unsharded run on 8 virtual CPU
devices in `tests/training/test_distribution.py`).

Several processes (hosts) form one run when Keras' multi-process variables
are set (`KERAS_DISTRIBUTION_JOB_ADDRESSES`, `KERAS_DISTRIBUTION_NUM_PROCESSES`,
`KERAS_DISTRIBUTION_PROCESS_ID`) or JAX detects a cluster (Slurm, Open MPI,
Cloud TPU, Kubernetes): `initialize_processes` starts them with
`keras.distribution.initialize()` before anything runs on a device. Each
process then feeds its own slice of every global batch (Keras assembles the
global array with `jax.make_array_from_process_local_data`); the mesh spans
the devices of every process.

Starting the processes is the one thing here that imports JAX (Keras has
no public way to ask whether JAX's distributed system is up or which
cluster it would detect); the process index, barriers and agreement checks
are in `keras_tips.backend.processes`.
"""

import contextlib
import os

import keras

from keras_tips.backend.processes import local_device_count
from keras_tips.backend.processes import process_count
from keras_tips.backend.processes import process_index

BATCH_AXIS = "batch"
MODEL_AXIS = "model"


def get_layout_map(device_mesh, model_axis=MODEL_AXIS):
    """Tensor-parallel layouts for the TIPS towers and heads.

    Megatron-style: the first matmul of each pair (QKV, MLP in) is split along
    its output features, the second (attention out, MLP out) along its input
    features, so each block needs one reduction per pair. The token
    embedding is split along its features: the text tower has no output
    layer over the vocabulary that a split along the vocabulary would serve,
    and a vocabulary size need not divide by the model-parallel size (the
    shapes vocabulary has 209 pieces), while the tower's width must anyway.
    Prototype matrices are split along their large axis; everything else
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
    layout_map[r".*token_embedding/embeddings"] = split_out
    layout_map[r".*head.*/prototypes"] = split_out
    return layout_map


def data_parallel(devices=None):
    """A `keras.distribution.DataParallel` over `devices` (default: all, of
    every process).

    Each process feeds its own data (the pipeline reads one shard per
    process), so Keras is told not to shard the dataset again.
    """
    return keras.distribution.DataParallel(
        devices=devices, auto_shard_dataset=False
    )


def model_parallel(model_parallel_size, devices=None):
    """A `ModelParallel` distribution on a (data, model) mesh.

    Args:
        model_parallel_size: int. Devices that share one model replica.
        devices: optional list of devices (default: all, of every process).
    """
    devices = devices or keras.distribution.list_devices()
    if (
        isinstance(model_parallel_size, bool)
        or not isinstance(model_parallel_size, int)
        or model_parallel_size < 1
    ):
        raise ValueError(
            "model_parallel_size must be a positive int. Received: "
            f"{model_parallel_size!r}"
        )
    if len(devices) % model_parallel_size:
        raise ValueError(
            f"{len(devices)} devices cannot be split into groups of "
            f"model_parallel_size={model_parallel_size}: choose a model-"
            f"parallel size that divides the device count ({len(devices)})."
        )
    mesh = keras.distribution.DeviceMesh(
        (len(devices) // model_parallel_size, model_parallel_size),
        [BATCH_AXIS, MODEL_AXIS],
        devices,
    )
    return keras.distribution.ModelParallel(
        layout_map=get_layout_map(mesh),
        batch_dim_name=BATCH_AXIS,
        auto_shard_dataset=False,
    )


def check_placement(distribution, per_process_batch_size):
    """Refuses a placement that the processes' batches cannot follow, before
    anything is built.

    Each process feeds its own slice of the global batch, so each must hold
    whole slices of the mesh's batch axis (a model replica may not span
    processes), and its batch must split evenly over them.

    Args:
        distribution: a `keras.distribution.Distribution`, or None.
        per_process_batch_size: int. `data.pipeline.batch_size`.

    Raises:
        ValueError: naming the settings and what would work.
    """
    count = process_count()
    if distribution is None:
        if count > 1:
            raise ValueError(
                f"{count} processes are configured but train.distribution is "
                "'none': each process would train a model of its own. Set "
                "train.distribution='data_parallel' or 'model_parallel:N'."
            )
        return
    mesh = distribution.device_mesh
    batch_axis = mesh.shape[mesh.axis_names.index(distribution.batch_dim_name)]
    if batch_axis % count:
        raise ValueError(
            f"The device mesh {dict(zip(mesh.axis_names, mesh.shape))} has "
            f"{batch_axis} model replica(s) for {count} processes: a model "
            "replica would span processes that read different data. Choose "
            "a model-parallel size that divides the devices of one process "
            f"({local_device_count()})."
        )
    shards = batch_axis // count
    if per_process_batch_size % shards:
        raise ValueError(
            f"data.pipeline.batch_size ({per_process_batch_size}, the batch "
            f"of each of the {count} process(es)) does not split over the "
            f"{shards} model replica(s) of each process: choose a multiple "
            f"of {shards}."
        )


# --- Several processes --------------------------------------------------------

PROCESS_VARIABLES = (
    "KERAS_DISTRIBUTION_JOB_ADDRESSES",
    "KERAS_DISTRIBUTION_NUM_PROCESSES",
    "KERAS_DISTRIBUTION_PROCESS_ID",
)


def configured_processes(environ=None):
    """`(num_processes, process_id)` that Keras' variables or a cluster JAX
    detects configure for this process, or None when none do.

    Raises:
        ValueError: the variables are incomplete, not integers, or the
            process id is out of range.
    """
    environ = os.environ if environ is None else environ
    present = [name for name in PROCESS_VARIABLES if environ.get(name)]
    if present:
        values = {}
        for name in PROCESS_VARIABLES[1:]:
            text = environ.get(name, "")
            try:
                values[name] = int(text)
            except ValueError:
                raise ValueError(
                    f"{name} must be an integer when {', '.join(present)} "
                    f"{'is' if len(present) == 1 else 'are'} set. Received: "
                    f"{text!r}"
                ) from None
        count, index = values[PROCESS_VARIABLES[1]], values[PROCESS_VARIABLES[2]]
        if count < 1:
            raise ValueError(
                f"KERAS_DISTRIBUTION_NUM_PROCESSES must be >= 1. Received: {count}"
            )
        if not 0 <= index < count:
            raise ValueError(
                f"KERAS_DISTRIBUTION_PROCESS_ID={index} is out of range for "
                f"KERAS_DISTRIBUTION_NUM_PROCESSES={count}: process ids are 0 "
                f"to {count - 1}."
            )
        if count > 1 and not environ.get(PROCESS_VARIABLES[0]):
            raise ValueError(
                "KERAS_DISTRIBUTION_JOB_ADDRESSES (host:port of process 0) "
                f"must be set for {count} processes."
            )
        return count, index
    return _detected_cluster()


def _detected_cluster():
    """The processes of a cluster JAX detects (Slurm, Open MPI, Cloud TPU,
    Kubernetes), as `jax.distributed.initialize()` without arguments would
    find them; None outside one or on another backend."""
    if keras.backend.backend() != "jax":
        return None
    try:
        # JAX's own detection (`jax.distributed.initialize` uses it); not a
        # public API, so any change in it counts as "no cluster".
        from jax._src import clusters

        environments = [
            env
            for env in clusters.ClusterEnv._cluster_types
            if not env.opt_in_only_method and env.is_env_present()
        ]
        if not environments:
            return None
        count = environments[0].get_process_count()
        index = environments[0].get_process_id()
    except Exception:
        return None
    return (count, index) if count and count > 1 else None


def initialize_processes():
    """Starts a multi-process run when one is configured (see
    `configured_processes`); does nothing for one process or when JAX's
    distributed system is already up. Call it before anything runs on a
    device.

    Returns:
        `(process_index, process_count)`.

    Raises:
        ValueError: a bad configuration (see `configured_processes`), or
            several processes on a backend other than JAX.
        RuntimeError: JAX already ran a computation in this process.
    """
    configured = configured_processes()
    if configured is None or configured[0] == 1:
        return process_index(), process_count()
    if keras.backend.backend() != "jax":
        raise ValueError(
            f"{configured[0]} processes are configured, but multi-process "
            "training needs the JAX backend (KERAS_BACKEND=jax); the "
            f"{keras.backend.backend()} backend runs one process."
        )
    import jax

    if not jax.distributed.is_initialized():
        try:
            keras.distribution.initialize()
        except RuntimeError as error:
            raise RuntimeError(
                "Could not start the multi-process run "
                f"({error}). Start training before anything else runs on a "
                "device in this process."
            ) from error
    if jax.process_count() != configured[0]:
        raise RuntimeError(
            f"{configured[0]} processes were configured, but JAX started "
            f"{jax.process_count()}."
        )
    return process_index(), process_count()


@contextlib.contextmanager
def outside_distribution():
    """Runs the block with no `keras.distribution` set.

    For what one process does alone on values it already holds (writing a
    checkpoint or a preset): objects Keras creates meanwhile (such as the
    reference optimizer its weight saving builds) would otherwise be placed
    on the mesh, which in a multi-process run is a collective that the
    other processes never join.
    """
    current = keras.distribution.distribution()
    keras.distribution.set_distribution(None)
    try:
        yield
    finally:
        keras.distribution.set_distribution(current)
