"""The processes of a multi-process (multi-host) run: who am I, how many are
we, wait for each other, agree.

Multi-process training exists only on JAX (`keras.distribution`); on the
other backends a run is one process and these functions say so. Starting
the processes is `keras_tips.training.distribution.initialize_processes`.

Example:
```python
from keras_tips.backend import processes

if processes.process_index() == 0:
    write_the_shared_files()
processes.sync_processes("shared files written")
```
"""

import keras
import numpy as np


def _multi_process_jax():
    return keras.backend.backend() == "jax"


def process_index():
    """This process's index in the run (0 on one process)."""
    if not _multi_process_jax():
        return 0
    import jax

    return jax.process_index()


def process_count():
    """The number of processes of the run (1 on one process)."""
    if not _multi_process_jax():
        return 1
    import jax

    return jax.process_count()


def local_device_count():
    """Devices of this process (those `keras.distribution` places work on)."""
    if not _multi_process_jax():
        return len(keras.distribution.list_devices())
    import jax

    return jax.local_device_count()


def sync_processes(name):
    """Returns once every process has reached the barrier `name` (at once on
    one process)."""
    if process_count() == 1:
        return
    from jax.experimental import multihost_utils

    multihost_utils.sync_global_devices(name)


def check_processes_agree(value, what):
    """Goes on only if every process holds the same int `value`.

    Args:
        value: int, e.g. the checkpoint step a process would resume from.
        what: str. What `value` is, for the error message.

    Raises:
        RuntimeError: naming `what` and each process's value.
    """
    if process_count() == 1:
        return
    from jax.experimental import multihost_utils

    values = np.asarray(
        multihost_utils.process_allgather(np.asarray([int(value)], np.int64))
    ).reshape(-1)
    if len(set(values.tolist())) > 1:
        raise RuntimeError(
            f"The processes disagree on {what}: "
            + ", ".join(f"process {i}: {v}" for i, v in enumerate(values))
            + ". Do they all see the same output directory?"
        )
