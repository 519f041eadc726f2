"""A two-process run trains what one process trains over the same global
batches, writes one set of shared files, and resumes after a kill.

Two `keras-tips pretrain` processes (JAX, two virtual CPU devices each, data
parallel, gloo collectives) form one run through Keras' multi-process
variables; each reads its own shard of the shapes data. The single-process
reference (`multiprocess_reference.py`, four virtual devices) feeds the same
global batches: process 0's shard's batch, then process 1's.
"""

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from tests.robustness import cli_runs

pytestmark = pytest.mark.slow

TOTAL_STEPS = 20
INTERVAL = 10
OVERRIDES = (
    "train.distribution='data_parallel'",
    "data.pipeline.batch_size=4",  # per process: 8 in all
)


def _free_port():
    with socket.socket() as sock:
        sock.bind(("localhost", 0))
        return sock.getsockname()[1]


def _command(output_dir):
    return cli_runs.command(output_dir, TOTAL_STEPS, INTERVAL, *OVERRIDES)


def _start(output_dir, port):
    """Starts the two processes of one run (returns the Popen objects)."""
    processes = []
    for index in range(2):
        env = cli_runs.environment()
        env.update(
            XLA_FLAGS="--xla_force_host_platform_device_count=2",
            KERAS_DISTRIBUTION_JOB_ADDRESSES=f"localhost:{port}",
            KERAS_DISTRIBUTION_NUM_PROCESSES="2",
            KERAS_DISTRIBUTION_PROCESS_ID=str(index),
        )
        processes.append(
            subprocess.Popen(
                _command(output_dir), cwd=cli_runs.ROOT, env=env,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )
        )
    return processes


def _finish(processes, timeout=900):
    outputs = []
    try:
        for process in processes:
            stdout, stderr = process.communicate(timeout=timeout)
            outputs.append((process.returncode, stdout, stderr))
    finally:
        _stop(processes)
    for index, (code, stdout, stderr) in enumerate(outputs):
        assert code == 0, f"process {index} exited with {code}:\n{stdout[-2000:]}\n{stderr[-6000:]}"
    return outputs


def _stop(processes):
    for process in processes:
        if process.poll() is None:
            process.kill()
        process.communicate()


def _final_weights(output_dir):
    path = os.path.join(output_dir, "checkpoints", f"step_{TOTAL_STEPS:08d}", "model.weights.h5")
    return cli_runs.h5_arrays(path)


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory):
    output_dir = str(tmp_path_factory.mktemp("two_processes"))
    _finish(_start(output_dir, _free_port()))
    return output_dir


def test_two_processes_train_what_one_process_trains(two_process_run, tmp_path):
    reference_dir = str(tmp_path / "reference")
    overrides = [
        f"train.total_steps={TOTAL_STEPS}",
        f"train.steps_per_checkpoint={INTERVAL}",
        *cli_runs.TINY,
        *OVERRIDES,
    ]
    cli_runs.run(
        [sys.executable, "-m", "tests.training.multiprocess_reference",
         cli_runs.RECIPE, reference_dir, *overrides],
        timeout=900,
    )
    reference = cli_runs.h5_arrays(os.path.join(reference_dir, "model.weights.h5"))
    # Every variable: student, teacher, centres, step, optimizer moments.
    # Same programme, same global batch, four devices either way; only the
    # all-reduce runs over gloo between processes instead of in one, and
    # sums in another order: not bitwise (1.5e-6 at most, seen), so within
    # the project's 1e-5 parity bound after 20 AdamW steps.
    cli_runs.assert_same_arrays(reference, _final_weights(two_process_run), atol=1e-5)


def test_one_writer_and_a_position_per_process(two_process_run):
    checkpoints = os.path.join(two_process_run, "checkpoints")
    assert sorted(os.listdir(checkpoints)) == [
        "data_process_0", "data_process_1", "latest",
        f"step_{INTERVAL:08d}", f"step_{TOTAL_STEPS:08d}",
    ]
    for index in range(2):
        with open(os.path.join(checkpoints, f"data_process_{index}", f"step_{TOTAL_STEPS:08d}.json")) as f:
            record = json.load(f)
        assert record["process_index"] == index and record["step"] == TOTAL_STEPS
        # 20 batches of 4 read from this process's own shard (which shard:
        # the equality with the reference above).
        assert record["position"]["grain_iterator"]["next_index"] == TOTAL_STEPS * 4
    # history.jsonl written once per interval (by process 0 alone).
    with open(os.path.join(two_process_run, "history.jsonl")) as f:
        steps = [json.loads(line)["step"] for line in f if line.strip()]
    assert steps == [INTERVAL, TOTAL_STEPS]
    assert os.path.isfile(os.path.join(two_process_run, "preset", "model.weights.h5"))


def test_both_processes_resume_after_a_kill(two_process_run, tmp_path):
    output_dir = str(tmp_path / "run")
    processes = _start(output_dir, _free_port())
    try:
        deadline = time.monotonic() + 900
        while cli_runs.checkpoint_step(output_dir) != INTERVAL:
            assert all(p.poll() is None for p in processes), "a process ended early"
            assert time.monotonic() < deadline, "no checkpoint before the timeout"
            time.sleep(0.02)
        assert all(p.poll() is None for p in processes)
    finally:
        _stop(processes)
    assert not os.path.exists(os.path.join(output_dir, "checkpoints", f"step_{TOTAL_STEPS:08d}"))
    _finish(_start(output_dir, _free_port()))
    cli_runs.assert_same_arrays(
        _final_weights(two_process_run), _final_weights(output_dir), atol=0.0,
        what="resumed two-process run",
    )
