"""Placements the processes and devices cannot follow are refused with a
clear error before the first step: a process id out of range, a
model-parallel size that does not divide the devices, a per-process batch
the model replicas do not divide. (Fewer data shards than processes:
`tests/data/test_pipeline.py::test_each_process_reads_its_own_shard_by_default`.)
"""

import os
import types

import keras
import pytest

from keras_tips.training import distribution as distribution_lib
from keras_tips.training import loop
from keras_tips.training.recipe import load_recipe

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RECIPE = os.path.join(ROOT, "recipes", "tiny_shapes.py")


def _configured(**variables):
    environ = {f"KERAS_DISTRIBUTION_{k.upper()}": v for k, v in variables.items()}
    return distribution_lib.configured_processes(environ)


def test_process_variables_are_read_and_checked():
    assert _configured(
        job_addresses="localhost:1234", num_processes="2", process_id="1"
    ) == (2, 1)
    with pytest.raises(ValueError, match="PROCESS_ID=2 is out of range .* 0 to 1"):
        _configured(job_addresses="localhost:1234", num_processes="2", process_id="2")
    with pytest.raises(ValueError, match="PROCESS_ID=-1 is out of range"):
        _configured(job_addresses="localhost:1234", num_processes="2", process_id="-1")
    with pytest.raises(ValueError, match="NUM_PROCESSES must be an integer"):
        _configured(job_addresses="localhost:1234", num_processes="two", process_id="0")
    with pytest.raises(ValueError, match="JOB_ADDRESSES .* must be set for 2"):
        _configured(num_processes="2", process_id="0")


def test_pretrain_refuses_a_process_id_out_of_range(monkeypatch, tmp_path):
    monkeypatch.setenv("KERAS_DISTRIBUTION_JOB_ADDRESSES", "localhost:1234")
    monkeypatch.setenv("KERAS_DISTRIBUTION_NUM_PROCESSES", "2")
    monkeypatch.setenv("KERAS_DISTRIBUTION_PROCESS_ID", "5")
    recipe = load_recipe(RECIPE, ["train.distribution='data_parallel'"])
    output_dir = tmp_path / "run"
    with pytest.raises(ValueError, match="PROCESS_ID=5 is out of range"):
        loop.pretrain(recipe, str(output_dir))
    assert not output_dir.exists()  # Refused before anything was written.


def test_model_parallel_size_must_divide_the_devices(tmp_path):
    devices = [f"cpu:{i}" for i in range(4)]
    with pytest.raises(ValueError, match="4 devices cannot be split .*=3"):
        distribution_lib.model_parallel(3, devices=devices)
    count = len(keras.distribution.list_devices())
    size = count + 1
    with pytest.raises(
        ValueError, match=f"'model_parallel:{size}'.*divides the device count"
    ):
        loop.make_distribution(f"model_parallel:{size}")
    with pytest.raises(ValueError, match="needs N, .* as a positive int"):
        loop.make_distribution("model_parallel:two")
    recipe = load_recipe(RECIPE, [f"train.distribution='model_parallel:{size}'"])
    output_dir = tmp_path / "run"
    with pytest.raises(ValueError, match="cannot be split"):
        loop.pretrain(recipe, str(output_dir))
    assert not output_dir.exists()


def _placement(mesh_shape, axis_names=("batch", "model")):
    size = 1
    for dim in mesh_shape:
        size *= dim
    mesh = keras.distribution.DeviceMesh(
        mesh_shape, list(axis_names), [f"cpu:{i}" for i in range(size)]
    )
    return types.SimpleNamespace(device_mesh=mesh, batch_dim_name="batch")


def test_per_process_batch_must_split_over_its_replicas(monkeypatch):
    """Two processes with two devices each."""
    monkeypatch.setattr(distribution_lib, "process_count", lambda: 2)
    monkeypatch.setattr(distribution_lib, "local_device_count", lambda: 2)
    data_parallel = _placement((4, 1))
    distribution_lib.check_placement(data_parallel, 6)  # 3 a replica.
    with pytest.raises(ValueError, match=r"batch_size \(5.*multiple of 2"):
        distribution_lib.check_placement(data_parallel, 5)
    # One replica over all four devices would span both processes.
    with pytest.raises(ValueError, match="1 model replica.* for 2 processes"):
        distribution_lib.check_placement(_placement((1, 4)), 8)
    with pytest.raises(ValueError, match="2 processes are configured but"):
        distribution_lib.check_placement(None, 8)
