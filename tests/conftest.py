"""Shared fixtures: the reference checkpoints and their converted presets."""

import json
import os

import numpy as np
import pytest

TESTDATA = os.path.join(os.path.dirname(__file__), "testdata")
REFERENCE_NAMES = ("tips_tiny", "tips_tiny_swiglu")


def reference_dir(name):
    return os.path.join(TESTDATA, name)


def reference_config(name):
    with open(os.path.join(reference_dir(name), "config.json")) as f:
        return json.load(f)


def reference_golden(name):
    with np.load(os.path.join(reference_dir(name), "golden.npz"), allow_pickle=False) as g:
        return {k: g[k] for k in g.files}


def convert_reference(name, output_dir):
    """Converts a reference checkpoint with the public converter."""
    from keras_tips import convert_official_checkpoint

    config = reference_config(name)
    directory = reference_dir(name)
    return convert_official_checkpoint(
        output_dir=output_dir,
        vision_path=os.path.join(directory, "vision.npz"),
        text_path=os.path.join(directory, "text.npz"),
        tokenizer_path=os.path.join(directory, "tokenizer.model"),
        image_size=config["vision"]["img_size"],
        vision_num_heads=config["vision"]["heads"],
        text_num_heads=config["text"]["num_heads"],
        max_sequence_length=config["text"]["max_len"],
    )


@pytest.fixture(scope="session")
def reference_presets(tmp_path_factory):
    """name -> preset directory converted from the reference checkpoints."""
    root = tmp_path_factory.mktemp("reference_presets")
    presets = {}
    for name in REFERENCE_NAMES:
        presets[name] = str(root / name)
        convert_reference(name, presets[name])
    return presets


@pytest.fixture(scope="session")
def tiny_model(reference_presets):
    from keras_tips import TIPSModel

    return TIPSModel.from_preset(reference_presets["tips_tiny"])


DPT_TASKS = ("segmentation", "depth", "normals")


def dpt_checkpoint(task):
    """The reference DPT decoder checkpoint of `task` (Scenic layout)."""
    return os.path.join(reference_dir("dpt_tiny"), f"{task}.npz")


def convert_dpt_reference(task, output_dir):
    """Converts a reference DPT checkpoint with the public converter."""
    from keras_tips import convert_dpt_checkpoint

    return convert_dpt_checkpoint(
        dpt_checkpoint(task),
        task=task,
        output_dir=output_dir,
        encoder_layers=reference_config("dpt_tiny")["intermediate_layers"],
    )


@pytest.fixture(scope="session")
def dpt_presets(tmp_path_factory):
    """task -> preset directory converted from the reference DPT heads."""
    root = tmp_path_factory.mktemp("dpt_presets")
    presets = {}
    for task in DPT_TASKS:
        presets[task] = str(root / task)
        convert_dpt_reference(task, presets[task])
    return presets


def pytest_collection_modifyitems(config, items):
    """Slow tests run only when KERAS_TIPS_SLOW=1 (CI sets it)."""
    if os.environ.get("KERAS_TIPS_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="slow: set KERAS_TIPS_SLOW=1 to run")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
