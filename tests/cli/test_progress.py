"""TrainingProgress: one line per tenth of a run when not on a terminal."""

import io

import keras
import numpy as np

from keras_tips.cli.progress import TrainingProgress


def _fit(progress, epochs, initial_epoch=0):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    x = np.ones((20, 3), "float32")
    model.fit(x, x[:, :1], batch_size=2, epochs=epochs, initial_epoch=initial_epoch,
              verbose=0, callbacks=[progress])


def test_progress_lines_count_every_step_across_epochs():
    stream = io.StringIO()
    _fit(TrainingProgress(20, "Pretraining", shown=("loss",), stream=stream), epochs=2)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 10, lines
    assert lines[0].startswith("Pretraining: step 2/20 (10%)"), lines
    assert lines[-1].startswith("Pretraining: step 20/20 (100%)"), lines
    assert all(", loss " in line for line in lines), lines


def test_resumed_progress_starts_where_the_run_left_off():
    stream = io.StringIO()
    _fit(TrainingProgress(30, stream=stream), epochs=3, initial_epoch=2)
    lines = stream.getvalue().splitlines()
    # Twenty steps were done before: lines every 3 steps from step 20.
    assert lines[0].startswith("Training: step 23/30 (76%)"), lines
    assert lines[-1].startswith("Training: step 30/30 (100%)"), lines
