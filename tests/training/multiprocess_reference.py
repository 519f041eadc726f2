"""Single-process reference for test_multiprocess: trains what a two-process
data-parallel `keras-tips pretrain` run trains, in one process on 4 virtual
CPU devices (JAX), and saves the final weights.

The global batch of the two-process run is process 0's batch followed by
process 1's (the mesh lists process 0's devices first), each read from its
own shard of the data. Here both shards' pipelines are built in this one
process and their batches concatenated in that order.

Usage:
    python -m tests.training.multiprocess_reference RECIPE OUTPUT_DIR KEY=VALUE...
"""

import dataclasses
import os
import sys

os.environ["KERAS_BACKEND"] = "jax"
os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_tips.training import loop  # noqa: E402
from keras_tips.training.recipe import load_recipe  # noqa: E402

PROCESSES = 2


def main(recipe_path, output_dir, overrides):
    recipe = load_recipe(recipe_path, overrides)
    interval = recipe.train.steps_per_checkpoint
    assert len(keras.distribution.list_devices()) == 2 * PROCESSES
    distribution = loop.make_distribution(recipe.train.distribution)
    os.makedirs(output_dir, exist_ok=True)
    with distribution.scope():
        keras.utils.set_random_seed(recipe.train.seed)
        tokenizer = loop.build_tokenizer(recipe, output_dir)
        pretrainer = loop.build_pretrainer(recipe, tokenizer.vocabulary_size())
        pipelines = []
        for index in range(PROCESSES):
            # Both fields at once (each alone is refused).
            pipeline = dataclasses.replace(
                recipe.data.pipeline, shard_index=index, shard_count=PROCESSES
            )
            shard = dataclasses.replace(
                recipe, data=dataclasses.replace(recipe.data, pipeline=pipeline)
            )
            pipelines.append(loop.build_pipeline(shard, tokenizer))

        def global_batches():
            while True:
                parts = [next(pipeline) for pipeline in pipelines]
                yield ({k: np.concatenate([p[k] for p in parts]) for k in parts[0]},)

        pretrainer.fit(
            global_batches(),
            steps_per_epoch=interval,
            epochs=recipe.train.total_steps // interval,
            verbose=0,
        )
        for pipeline in pipelines:
            pipeline.close()
        pretrainer.save_weights(os.path.join(output_dir, "model.weights.h5"))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3:])
