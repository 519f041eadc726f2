"""Non-finite losses: "stop" names the step and the terms and never writes a
NaN checkpoint; "skip" leaves the weights and optimizer state of such a step
untouched and goes on."""

import logging
import os

import keras
import numpy as np
import pytest

from keras_tips.training.checkpoint import PeriodicCheckpoint
from keras_tips.training.checkpoint import restore_checkpoint
from keras_tips.training.nonfinite import SkipNonFiniteSteps
from keras_tips.training.nonfinite import SkipNonFiniteUpdates
from keras_tips.training.nonfinite import StopOnNonFiniteLoss
from keras_tips.training.optimizers import build_optimizer
from tests.robustness import cli_runs
from tests.training.pretrain_fixtures import numpy_weights
from tests.training.pretrain_fixtures import random_batch
from tests.training.pretrain_fixtures import tiny_pretrainer


def _batches(bad_step=None, key="global_images"):
    """Batches for `fit`; the batch of training step `bad_step` (1-based)
    has one NaN pixel in `key`."""
    for index in range(1000):
        batch = random_batch(4, seed=index)
        if index + 1 == bad_step:
            batch[key].reshape(-1)[0] = np.nan
        yield (batch,)


def _pretrainer(optimizer=None, total_steps=8):
    pretrainer = tiny_pretrainer(total_steps=total_steps)
    pretrainer.compile(
        optimizer=optimizer or build_optimizer(total_steps=total_steps)
    )
    return pretrainer


def _all_finite(model):
    return all(np.isfinite(w).all() for w in numpy_weights(model))


def test_stop_names_the_step_and_terms_and_keeps_only_finite_checkpoints(
    tmp_path,
):
    directory = str(tmp_path / "checkpoints")
    pretrainer = _pretrainer()
    with pytest.raises(FloatingPointError) as caught:
        pretrainer.fit(
            _batches(bad_step=7),
            steps_per_epoch=2,
            epochs=4,
            verbose=0,
            callbacks=[StopOnNonFiniteLoss(), PeriodicCheckpoint(directory)],
        )
    message = str(caught.value)
    assert "training step 7" in message
    # The NaN pixel reaches the teacher: its self-distillation and masked
    # image modelling terms are the non-finite ones.
    assert "distill=nan" in message and "mask=nan" in message
    assert 'train.nonfinite="skip"' in message
    # The default keeps three checkpoints; none after the bad step.
    assert sorted(os.listdir(directory)) == [
        "latest", "step_00000002", "step_00000004", "step_00000006"
    ]
    restored = _pretrainer()
    assert restore_checkpoint(restored, directory)["step"] == 6
    assert _all_finite(restored)


class _WeightsAfterEachStep(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.student = []
        self.iterations = []

    def on_train_batch_end(self, batch, logs=None):
        if hasattr(self.model, "jax_state_sync"):
            self.model.jax_state_sync()
        self.student.append(numpy_weights(self.model.backbone))
        self.iterations.append(
            int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))
        )


def _max_change(before, after):
    return max(float(np.abs(a - b).max()) for a, b in zip(before, after))


@pytest.mark.multibackend
def test_skip_leaves_the_step_out_and_training_goes_on(tmp_path, caplog):
    directory = str(tmp_path / "checkpoints")
    pretrainer = _pretrainer(SkipNonFiniteUpdates(build_optimizer(total_steps=8)))
    recorder = _WeightsAfterEachStep()
    with caplog.at_level(logging.WARNING, "keras_tips.training.nonfinite"):
        # NaN in a local crop: only the student sees it, so its gradients
        # are not finite while the teacher and the centres stay finite.
        history = pretrainer.fit(
            _batches(bad_step=5, key="local_images"),
            steps_per_epoch=2,
            epochs=4,
            verbose=0,
            callbacks=[
                SkipNonFiniteSteps(),
                recorder,
                PeriodicCheckpoint(directory),
            ],
        )
    assert "training step 5" in caplog.text and "distill=nan" in caplog.text
    assert history.history["skipped_steps"] == [0, 0, 1, 0]
    assert recorder.iterations == [1, 2, 3, 4, 4, 5, 6, 7]
    changes = [
        _max_change(before, after)
        for before, after in zip(recorder.student, recorder.student[1:])
    ]
    # Steps 2..8: only step 5 leaves the student exactly as it was.
    assert changes[3] == 0.0
    assert all(change > 0 for i, change in enumerate(changes) if i != 3)
    assert _all_finite(pretrainer)
    assert sorted(os.listdir(directory))[-2:] == [
        "step_00000006", "step_00000008"
    ]


@pytest.mark.slow
def test_skip_changes_nothing_when_every_step_is_finite():
    batches = [random_batch(4, seed=i) for i in range(3)]
    results = []
    for optimizer in (
        build_optimizer(total_steps=8),
        SkipNonFiniteUpdates(build_optimizer(total_steps=8)),
    ):
        pretrainer = _pretrainer(optimizer)
        for batch in batches:
            pretrainer.train_on_batch(batch)
        results.append(numpy_weights(pretrainer))
    for plain, wrapped in zip(*results):
        np.testing.assert_allclose(plain, wrapped, rtol=0, atol=1e-6)


@pytest.mark.slow
def test_skip_stops_when_the_teacher_state_is_poisoned():
    """NaN pixels in a global crop reach the teacher and the centres, which
    the optimizer cannot undo: the run stops, naming the variable."""
    pretrainer = _pretrainer(SkipNonFiniteUpdates(build_optimizer(total_steps=8)))
    with pytest.raises(FloatingPointError, match="center.*not finite"):
        pretrainer.fit(
            _batches(bad_step=3),
            steps_per_epoch=2,
            epochs=4,
            verbose=0,
            callbacks=[SkipNonFiniteSteps()],
        )


def test_recipe_option():
    from keras_tips.training.loop import build_pretrainer
    from keras_tips.training.nonfinite import nonfinite_guard
    from keras_tips.training.recipe import PretrainRecipe
    from keras_tips.training.recipe import apply_overrides

    recipe = PretrainRecipe()
    assert recipe.train.nonfinite == "stop"
    with pytest.raises(ValueError, match="train.nonfinite"):
        apply_overrides(recipe, ["train.nonfinite=ignore"]).validate()
    with pytest.raises(ValueError, match="train.nonfinite"):
        nonfinite_guard("ignore")
    assert isinstance(nonfinite_guard("stop"), StopOnNonFiniteLoss)
    assert isinstance(nonfinite_guard("skip"), SkipNonFiniteSteps)
    apply_overrides(
        recipe,
        [
            "train.nonfinite=skip",
            "model.vision.num_layers=1",
            "model.text.num_layers=1",
            "objective.num_prototypes=16",
            # PipelineConfig is a frozen dataclass: replaced, not mutated.
            "data.pipeline.batch_size=8",
        ],
    ).validate()
    assert recipe.data.pipeline.batch_size == 8
    pretrainer = build_pretrainer(recipe, vocabulary_size=40)
    assert isinstance(pretrainer.optimizer, SkipNonFiniteUpdates)


@pytest.mark.slow
def test_cli_run_with_a_huge_learning_rate_stops_without_a_checkpoint(
    tmp_path,
):
    output_dir = str(tmp_path / "run")
    command = cli_runs.command(
        output_dir,
        10,
        5,
        "optimizer.peak_learning_rate=1e30",
        "optimizer.global_clipnorm=None",
    )
    result = cli_runs.run(command, check=False)
    assert result.returncode != 0
    assert "Non-finite loss at training step" in result.stderr
    assert "loss=nan" in result.stderr
    checkpoints = os.path.join(output_dir, "checkpoints")
    assert not os.path.exists(checkpoints) or not [
        name for name in os.listdir(checkpoints) if name.startswith("step_")
    ]
