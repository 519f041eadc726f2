"""Runs `keras-tips pretrain` in subprocesses (JAX, CPU) for the robustness
tests: uninterrupted, or killed with SIGKILL once training is under way."""

import os
import signal
import subprocess
import sys
import time

import h5py
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RECIPE = os.path.join(ROOT, "recipes", "tiny_shapes.py")

TINY = (
    "optimizer.warmup_steps=0",
    "data.num_examples=64",
    "data.pipeline.batch_size=8",
    "model.vision.num_layers=1",
    "model.text.num_layers=1",
    "objective.num_prototypes=64",
    "objective.head_hidden_dim=32",
    "objective.head_bottleneck_dim=16",
)


def command(output_dir, total_steps, interval, *overrides):
    sets = [
        f"train.total_steps={total_steps}",
        f"train.steps_per_checkpoint={interval}",
        *TINY,
        *overrides,
    ]
    args = [sys.executable, "-m", "keras_tips.cli", "pretrain"]
    args += ["--recipe", RECIPE, "--output", str(output_dir), "--quiet"]
    for item in sets:
        args += ["--set", item]
    return args


def environment():
    env = dict(os.environ)
    env.update(
        KERAS_BACKEND="jax",
        JAX_PLATFORMS="cpu",
        TF_CPP_MIN_LOG_LEVEL="3",
        PYTHONHASHSEED="0",
        CUDA_VISIBLE_DEVICES="",
    )
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (ROOT, env.get("PYTHONPATH")) if p
    )
    return env


def run(args, timeout=600, check=True):
    """Runs to completion; fails with the output if the command fails
    (unless `check` is False)."""
    result = subprocess.run(
        args, cwd=ROOT, env=environment(), capture_output=True, text=True,
        timeout=timeout,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"{' '.join(args)} exited with {result.returncode}:\n"
            f"{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
        )
    return result


class Background:
    """A command running in the background; `wait()` fails with its output
    if it fails."""

    def __init__(self, args):
        self.args = args
        self.process = subprocess.Popen(
            args, cwd=ROOT, env=environment(), stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True,
        )
        self._done = False

    def wait(self, timeout=600):
        if not self._done:
            stdout, stderr = self.process.communicate(timeout=timeout)
            self._done = True
            if self.process.returncode != 0:
                raise AssertionError(
                    f"{' '.join(self.args)} exited with "
                    f"{self.process.returncode}:\n{stdout[-3000:]}\n"
                    f"{stderr[-6000:]}"
                )

    def stop(self):
        if self.process.poll() is None:
            self.process.kill()
            self.process.communicate()


def checkpoint_step(output_dir):
    """Step of the checkpoint `latest` names, or None."""
    pointer = os.path.join(output_dir, "checkpoints", "latest")
    try:
        with open(pointer, encoding="utf-8") as f:
            name = f.read().strip()
    except FileNotFoundError:
        return None
    return int(name.split("_")[-1]) if name else None


def run_and_kill(args, output_dir, after_step, delay, timeout=600):
    """Starts `args`, waits until a checkpoint of step >= `after_step` exists
    (not at all when `after_step` is None), sleeps `delay` seconds and sends
    SIGKILL.

    Returns:
        `(killed, step)`: whether the process was killed (False when it had
        ended by itself) and the checkpoint step `latest` named afterwards
        (None when there was none).
    """
    process = subprocess.Popen(
        args, cwd=ROOT, env=environment(),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + timeout
        while after_step is not None:
            step = checkpoint_step(output_dir)
            if step is not None and step >= after_step:
                break
            if process.poll() is not None:
                raise AssertionError(
                    f"The run ended before its checkpoint of step {after_step}"
                    f" (exit code {process.returncode}):\n"
                    + process.stderr.read().decode(errors="replace")[-6000:]
                )
            if time.monotonic() > deadline:
                raise AssertionError("No checkpoint before the timeout.")
            time.sleep(0.02)
        time.sleep(delay)
        killed = process.poll() is None
        if killed:
            process.send_signal(signal.SIGKILL)
            process.wait()
        elif process.returncode != 0:
            raise AssertionError(
                f"The run failed (exit code {process.returncode}):\n"
                + process.stderr.read().decode(errors="replace")[-6000:]
            )
        return killed, checkpoint_step(output_dir)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stderr.close()


def h5_arrays(path):
    """Every dataset of an HDF5 weights file, by its path inside the file."""
    arrays = {}
    with h5py.File(path, "r") as f:
        def visit(name, node):
            if isinstance(node, h5py.Dataset):
                arrays[name] = np.asarray(node)
        f.visititems(visit)
    return arrays


def assert_same_arrays(expected, actual, atol=1e-6, what="weights"):
    assert sorted(expected) == sorted(actual), f"{what}: different variables"
    worst = {}
    for name, value in expected.items():
        other = actual[name]
        assert value.shape == other.shape, f"{what}: {name} shape differs"
        if value.dtype.kind in "fc":
            diff = float(np.max(np.abs(value - other))) if value.size else 0.0
            if not diff <= atol:
                worst[name] = diff
        elif not np.array_equal(value, other):
            worst[name] = "differs"
    assert not worst, f"{what} differ (max abs diff by variable): {worst}"
