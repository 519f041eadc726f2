"""A pretraining run killed with SIGKILL and started again with the same
command ends exactly where an uninterrupted run ends.

Both runs are `keras-tips pretrain` subprocesses (JAX, CPU, tiny model, two
vision blocks with stochastic depth so that random seed state matters too).
The comparison covers every variable of the final checkpoint (student,
EMA teacher, centres, step counter, optimizer moments and iteration count),
the exported preset, and the per-interval losses in `history.jsonl`.
"""

import json
import os
import random

import pytest

from tests.robustness import cli_runs

TOTAL_STEPS = 30
INTERVAL = 5
# Two vision blocks: with one, the stochastic depth rate of the only block is
# 0 and the DropPath seed generators would never be used.
OVERRIDES = ("model.vision.num_layers=2", "model.vision.drop_path_rate=0.2")


def _command(output_dir, total_steps=TOTAL_STEPS):
    return cli_runs.command(output_dir, total_steps, INTERVAL, *OVERRIDES)


def _final_checkpoint(output_dir, step=TOTAL_STEPS):
    return os.path.join(
        output_dir, "checkpoints", f"step_{step:08d}", "model.weights.h5"
    )


def _history(output_dir):
    with open(os.path.join(output_dir, "history.jsonl"), encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _assert_same_run(reference, resumed):
    cli_runs.assert_same_arrays(
        cli_runs.h5_arrays(_final_checkpoint(reference)),
        cli_runs.h5_arrays(_final_checkpoint(resumed)),
        what="final checkpoint",
    )
    cli_runs.assert_same_arrays(
        cli_runs.h5_arrays(os.path.join(reference, "preset", "model.weights.h5")),
        cli_runs.h5_arrays(os.path.join(resumed, "preset", "model.weights.h5")),
        what="exported preset",
    )
    expected, actual = _history(reference), _history(resumed)
    assert [r["step"] for r in actual] == list(
        range(INTERVAL, TOTAL_STEPS + 1, INTERVAL)
    ), "history.jsonl must hold each interval exactly once"
    for want, got in zip(expected, actual):
        for key, value in want.items():
            assert got[key] == pytest.approx(value, rel=1e-6, abs=1e-6), (
                f"{key} of the interval ending at step {want['step']}"
            )


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    """An uninterrupted run, started in the background (call it to wait for
    it and get its output directory)."""
    output_dir = str(tmp_path_factory.mktemp("uninterrupted"))
    run = cli_runs.Background(_command(output_dir))

    def finished():
        run.wait()
        return output_dir

    yield finished
    run.stop()


def test_killed_run_resumes_to_the_same_weights_and_losses(
    reference_run, tmp_path
):
    output_dir = str(tmp_path / "run")
    rng = random.Random(6)
    # Kill after checkpoint 1..4 of 6, plus up to ~an interval of steps:
    # mid-interval, mid-save, or between a save and the history record.
    after_step = INTERVAL * rng.randint(1, 4)
    delay = rng.uniform(0.0, 0.4)
    killed, saved = cli_runs.run_and_kill(
        _command(output_dir), output_dir, after_step, delay
    )
    assert killed and after_step <= saved < TOTAL_STEPS, (
        f"the run was not killed mid-way (killed={killed}, step={saved})"
    )
    cli_runs.run(_command(output_dir))
    _assert_same_run(reference_run(), output_dir)


@pytest.mark.slow
def test_repeated_kills_at_random_moments(reference_run, tmp_path):
    """Killed before the first checkpoint, twice more at random moments
    (possibly during the export), then run again twice (the second run of a
    finished run only re-exports)."""
    output_dir = str(tmp_path / "run")
    rng = random.Random(66)
    command = _command(output_dir)
    killed, saved = cli_runs.run_and_kill(
        command, output_dir, None, rng.uniform(0.0, 8.0)
    )
    assert killed
    for _ in range(2):
        killed, saved = cli_runs.run_and_kill(
            command,
            output_dir,
            min((saved or 0) + INTERVAL, TOTAL_STEPS),
            rng.uniform(0.0, 1.5),
        )
        if not killed:
            break
    cli_runs.run(command)
    cli_runs.run(command)
    _assert_same_run(reference_run(), output_dir)


def test_a_damaged_checkpoint_costs_one_interval(reference_run, tmp_path):
    """The run is killed, the checkpoint `latest` names is damaged (its
    weights' bytes flipped), and the same command resumes from the previous
    one with a warning naming both, ending where an uninterrupted run ends."""
    from tests.robustness import damage

    output_dir = str(tmp_path / "run")
    killed, saved = cli_runs.run_and_kill(
        _command(output_dir), output_dir, 3 * INTERVAL, 0.0
    )
    assert killed and 3 * INTERVAL <= saved < TOTAL_STEPS, (killed, saved)
    damaged = os.path.join(
        output_dir, "checkpoints", f"step_{saved:08d}", "model.weights.h5"
    )
    damage.flip_bytes(damaged)
    result = cli_runs.run(_command(output_dir))
    assert "SHA-256 mismatch" in result.stderr and damaged in result.stderr
    previous = f"step_{saved - INTERVAL:08d} (step {saved - INTERVAL})"
    assert f"Resuming from the newest intact checkpoint, {previous}" in result.stderr
    _assert_same_run(reference_run(), output_dir)
