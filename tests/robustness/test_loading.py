"""Presets, checkpoints and official `.npz` files load with no pickle and in
Keras safe mode; damaged or altered files give clear errors naming them."""

import io
import json
import os
import pickle
import shutil
import zipfile

import h5py
import keras
import numpy as np
import pytest
from keras.src.saving import serialization_lib

from keras_tips import TIPSModel
from keras_tips.conversion.official_checkpoint import read_npz
from keras_tips.errors import CheckpointError
from keras_tips.training.checkpoint import restore_checkpoint
from keras_tips.training.checkpoint import save_checkpoint
from tests.conftest import convert_reference
from tests.conftest import reference_dir
from tests.robustness import damage
from tests.robustness.save_worker import fill
from tests.robustness.save_worker import tiny_model

pytestmark = pytest.mark.multibackend


@pytest.fixture
def no_pickle(monkeypatch):
    """Any use of pickle fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("pickle was used")

    class Refused(pickle.Unpickler):
        def __init__(self, *args, **kwargs):
            refuse()

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "Unpickler", Refused)


def test_everything_loads_in_safe_mode_without_pickle(
    reference_presets, tmp_path, no_pickle
):
    directory = reference_dir("tips_tiny")
    checkpoints = str(tmp_path / "checkpoints")
    model = tiny_model()
    fill(model, 2)
    save_checkpoint(model, checkpoints, 2)
    for name in ("vision.npz", "text.npz"):
        assert read_npz(os.path.join(directory, name))
    converted = str(tmp_path / "converted")
    convert_reference("tips_tiny", converted)
    model = TIPSModel.from_preset(converted)
    assert np.isfinite(model.encode_texts(["a red square"])).all()
    # Loading did not switch safe mode off for the process.
    assert serialization_lib.in_safe_mode() is not False
    assert restore_checkpoint(tiny_model(), checkpoints)["step"] == 2
    # Every config of the preset deserializes in safe mode (no lambdas, only
    # registered classes). (The tokenizer's vocabulary, an asset of the
    # preset, is read by Keras Hub after deserialization.)
    for name in ("config.json", "task.json", "preprocessor.json"):
        with open(os.path.join(converted, name), encoding="utf-8") as f:
            config = json.load(f)
        with serialization_lib.SafeModeScope(True):
            keras.saving.deserialize_keras_object(config, safe_mode=True)


# --- Damaged presets ----------------------------------------------------------


def _nan_values(path):
    """A well-formed file whose first float dataset holds a NaN."""
    with h5py.File(path, "r+") as f:
        datasets = []
        f.visititems(
            lambda name, node: datasets.append(node)
            if isinstance(node, h5py.Dataset) and node.dtype.kind == "f"
            and node.ndim
            else None
        )
        values = datasets[0][()]
        values.reshape(-1)[0] = np.nan
        datasets[0][...] = values


@pytest.mark.parametrize(
    "file, damage, error, message",
    [
        ("model.weights.h5", damage.truncate, OSError, "model.weights.h5"),
        ("model.weights.h5", damage.zero_header, OSError, "model.weights.h5"),
        ("model.weights.h5", damage.empty, OSError, "model.weights.h5"),
        ("model.weights.h5", _nan_values, ValueError, "model.weights.h5.*NaN"),
        ("config.json", damage.truncate, ValueError, "config.json"),
        ("task.json", damage.empty, ValueError, "task.json"),
        (
            os.path.join("assets", "tokenizer", "vocabulary.spm"),
            damage.truncate,
            ValueError,
            "vocabulary.spm",
        ),
    ],
)
def test_damaged_preset_files_are_named(
    reference_presets, tmp_path, file, damage, error, message
):
    preset = str(tmp_path / "preset")
    shutil.copytree(reference_presets["tips_tiny"], preset)
    damage(os.path.join(preset, file))
    with pytest.raises(error, match=message):
        TIPSModel.from_preset(preset)


# --- Damaged official .npz files -------------------------------------------------


def _npz_bytes(**arrays):
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


def _corrupt_member(data):
    """A zip whose first member's compressed data is garbage."""
    archive = bytearray(data)
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        info = z.infolist()[0]
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    archive[start + 8 : start + 40] = b"\xff" * 32
    return bytes(archive)


def _npy_bytes():
    buffer = io.BytesIO()
    np.save(buffer, np.arange(6.0))
    return buffer.getvalue()


NPZ_CASES = {
    "empty": lambda: b"",
    "truncated": lambda: _npz_bytes(a=np.arange(1000.0))[:300],
    "npy_not_npz": _npy_bytes,
    "pickled_objects": lambda: _npz_bytes(a=np.array([{"x": 1}], dtype=object)),
    "corrupt_member": lambda: _corrupt_member(_npz_bytes(a=np.arange(1000.0))),
    "text": lambda: b"this is not an archive\n" * 20,
}


@pytest.mark.parametrize("case", sorted(NPZ_CASES))
def test_damaged_npz_files_are_named(tmp_path, case, no_pickle):
    path = str(tmp_path / "vision.npz")
    with open(path, "wb") as f:
        f.write(NPZ_CASES[case]())
    with pytest.raises(CheckpointError, match="vision.npz"):
        read_npz(path, "vision checkpoint")


def test_converter_names_a_truncated_npz(tmp_path):
    from keras_tips import convert_official_checkpoint

    directory = reference_dir("tips_tiny")
    vision = str(tmp_path / "vision.npz")
    shutil.copy(os.path.join(directory, "vision.npz"), vision)
    damage.truncate(vision)
    with pytest.raises(CheckpointError, match="vision.npz"):
        convert_official_checkpoint(
            output_dir=str(tmp_path / "out"),
            vision_path=vision,
            text_path=os.path.join(directory, "text.npz"),
            tokenizer_path=os.path.join(directory, "tokenizer.model"),
        )
    assert not os.path.exists(tmp_path / "out")
