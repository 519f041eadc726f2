"""Helper process for test_cross_backend: saves or loads a preset on the
backend given by KERAS_BACKEND. Usage:
    python -m tests.models.cross_backend_worker save DIR
    python -m tests.models.cross_backend_worker load DIR
"""

import os
import sys

import numpy as np


def inputs():
    rng = np.random.default_rng(7)
    return rng.random((2, 42, 70, 3), dtype="float32"), ["A photo of a CAT", "", "two cows"]


def outputs(model):
    images, texts = inputs()
    result = dict(model.encode_images(images))
    result["texts"] = model.encode_texts(texts)
    result["temperature"] = np.array(model.temperature_for("cls_1"))
    return result


def save(directory):
    import keras

    from keras_tips import TIPSBackbone
    from keras_tips import TIPSImageConverter
    from keras_tips import TIPSModel
    from keras_tips import TIPSPreprocessor
    from keras_tips import TIPSTextEncoder
    from keras_tips import TIPSTokenizer
    from keras_tips import TIPSVisionEncoder

    keras.utils.set_random_seed({"jax": 1, "tensorflow": 2, "torch": 3}[keras.backend.backend()])
    testdata = os.path.join(os.path.dirname(__file__), "..", "testdata", "tips_tiny")
    backbone = TIPSBackbone(
        TIPSVisionEncoder(64, 2, 4, 256, position_grid_size=4, layer_scale_init_value=0.5),
        TIPSTextEncoder(96, 64, 2, 4, 256, max_sequence_length=16),
        temperature=0.03,
    )
    preprocessor = TIPSPreprocessor(
        TIPSTokenizer(os.path.join(testdata, "tokenizer.model"), sequence_length=16),
        TIPSImageConverter((56, 56)),
    )
    model = TIPSModel(backbone, preprocessor)
    model.save_to_preset(directory)
    np.savez(os.path.join(directory, "expected_outputs.npz"), **outputs(model))


def load(directory):
    from keras_tips import TIPSModel

    model = TIPSModel.from_preset(directory)
    with np.load(os.path.join(directory, "expected_outputs.npz")) as expected:
        got = outputs(model)
        for key in expected.files:
            np.testing.assert_allclose(got[key], expected[key], atol=1e-5, rtol=0, err_msg=key)


if __name__ == "__main__":
    {"save": save, "load": load}[sys.argv[1]](sys.argv[2])
    print("ok")
