"""Parity with the official implementation on the reference checkpoints.

Every output of the official PyTorch code stored in `golden.npz` is
reproduced within 1e-5 (float32) after converting the checkpoints with the
public converter and loading the preset with `TIPSModel.from_preset`.
"""

import keras
import numpy as np
import pytest

from tests.conftest import REFERENCE_NAMES
from tests.conftest import reference_config
from tests.conftest import reference_golden

pytestmark = pytest.mark.multibackend
ATOL = 1e-5


@pytest.fixture(scope="module")
def models(reference_presets):
    from keras_tips import TIPSModel

    return {n: TIPSModel.from_preset(reference_presets[n]) for n in REFERENCE_NAMES}


def nhwc(images):
    return np.transpose(images, (0, 2, 3, 1))


@pytest.mark.parametrize("name", REFERENCE_NAMES)
def test_image_outputs_at_every_size(models, name):
    golden = reference_golden(name)
    sizes = reference_config(name)["image_sizes"]
    for index in range(len(sizes)):
        key = f"image_{index}"
        outputs = models[name].encode_images(nhwc(golden[key]))
        np.testing.assert_allclose(outputs["cls_1"], golden[f"{key}_cls1"], atol=ATOL, rtol=0)
        np.testing.assert_allclose(outputs["cls_2"], golden[f"{key}_cls2"], atol=ATOL, rtol=0)
        np.testing.assert_allclose(
            outputs["patches"], golden[f"{key}_patches"], atol=ATOL, rtol=0
        )


@pytest.mark.parametrize("name", REFERENCE_NAMES)
def test_masked_forward(models, name):
    golden = reference_golden(name)
    model = models[name]
    outputs = model.encode_images(nhwc(golden["image_0"]), patch_mask=golden["masked_mask"])
    np.testing.assert_allclose(outputs["cls_1"], golden["masked_cls1"], atol=ATOL, rtol=0)
    np.testing.assert_allclose(outputs["cls_2"], golden["masked_cls2"], atol=ATOL, rtol=0)
    np.testing.assert_allclose(outputs["patches"], golden["masked_patches"], atol=ATOL, rtol=0)
    # The tokens before the final norm, through the layer API.
    encoder = model.backbone.vision_encoder
    prenorm = encoder(
        nhwc(golden["image_0"]), patch_mask=golden["masked_mask"], return_prenorm=True
    )["prenorm_tokens"]
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(prenorm), golden["masked_prenorm"], atol=ATOL, rtol=0
    )
    # The mask must matter: unmasked outputs differ.
    unmasked = model.encode_images(nhwc(golden["image_0"]))
    assert np.abs(unmasked["patches"] - outputs["patches"]).max() > 1e-3


@pytest.mark.parametrize("name", REFERENCE_NAMES)
def test_intermediate_layers(models, name):
    golden = reference_golden(name)
    outputs = models[name].encode_images(nhwc(golden["image_0"]), return_intermediates=True)
    np.testing.assert_allclose(
        np.moveaxis(outputs["intermediate_patches"], 1, 0),
        golden["intermediate_patches"],
        atol=ATOL,
        rtol=0,
    )
    np.testing.assert_allclose(
        np.moveaxis(outputs["intermediate_cls_1"], 1, 0),
        golden["intermediate_cls1"],
        atol=ATOL,
        rtol=0,
    )
    # The last intermediate layer is the final output.
    np.testing.assert_allclose(
        outputs["intermediate_patches"][:, -1], outputs["patches"], atol=1e-6
    )


@pytest.mark.parametrize("name", REFERENCE_NAMES)
def test_tokenizer_and_text_embeddings(models, name):
    golden = reference_golden(name)
    texts = [str(t) for t in golden["texts"]]
    token_ids, padding_mask = models[name].tokenize(texts)
    np.testing.assert_array_equal(token_ids, golden["text_ids"])
    np.testing.assert_array_equal(padding_mask, golden["text_paddings"] == 0)
    embeddings = models[name].encode_texts(texts)
    np.testing.assert_allclose(embeddings, golden["text_embeddings"], atol=ATOL, rtol=0)
    # The empty string pools to exact zeros, never NaN.
    empty = texts.index("")
    assert np.all(embeddings[empty] == 0)


@pytest.mark.parametrize("name", REFERENCE_NAMES)
def test_temperature(models, name):
    golden = reference_golden(name)
    for cls_token in ("cls_1", "cls_2"):
        assert abs(models[name].temperature_for(cls_token) - float(golden["temperature"])) < 1e-7
