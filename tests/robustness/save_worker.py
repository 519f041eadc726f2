"""Saves checkpoints in a loop, slowly, until it is killed.

Run as `python -m tests.robustness.save_worker DIRECTORY SEED`. Resumes from
the latest checkpoint of DIRECTORY (so every start also tests a restore
after a kill), then for step = restored + 1, 2, ... sets every model weight
and optimizer variable to `step` and saves. File writes, renames and
deletions are slowed down by small random sleeps so that a kill lands in
every phase of `save_checkpoint`. Prints `saved N` after each save.
"""

import os
import random
import shutil
import sys
import time

import numpy as np


def tiny_model():
    import keras

    model = keras.Sequential(
        [keras.Input((6,)), keras.layers.Dense(16), keras.layers.Dense(3)]
    )
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
    model.optimizer.build(model.trainable_variables)
    return model


def fill(model, value):
    """Sets every weight and every float optimizer variable to `value`."""
    for variable in list(model.weights) + list(model.optimizer.variables):
        variable.assign(np.full(variable.shape, value, variable.dtype))


def main(directory, seed):
    from keras_tips.training import checkpoint

    rng = random.Random(seed)
    model = tiny_model()
    state = checkpoint.restore_checkpoint(model, directory)
    step = 0 if state is None else state["step"]

    def slow(function):
        def wrapper(*args, **kwargs):
            time.sleep(rng.uniform(0, 0.004))
            result = function(*args, **kwargs)
            time.sleep(rng.uniform(0, 0.004))
            return result

        return wrapper

    original_save = model.save_weights

    def slow_save_weights(path):
        # Write elsewhere, then copy in chunks: a kill leaves half a file.
        original_save(path + ".whole.weights.h5")
        with open(path + ".whole.weights.h5", "rb") as f:
            data = f.read()
        os.remove(path + ".whole.weights.h5")
        with open(path, "wb") as f:
            for start in range(0, len(data), 4096):
                f.write(data[start : start + 4096])
                f.flush()
                time.sleep(rng.uniform(0, 0.002))

    model.save_weights = slow_save_weights
    os.replace = slow(os.replace)
    shutil.rmtree = slow(shutil.rmtree)
    while True:
        step += 1
        fill(model, step)
        checkpoint.save_checkpoint(
            model, directory, step, extra_state={"fill": step}, keep=2
        )
        print(f"saved {step}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
