"""A stand-in for `TIPSModel` whose embeddings are known: colours.

An image's CLS embeddings are its mean RGB colour, a patch's embedding the
mean colour of its 14 x 14 pixels. A text's embedding is the sum of one-hot
vectors of the colour words it contains (`red`, `green`, `blue`), or, when
it holds three numbers, those numbers: a caption "colour 0.2 0.5 0.9"
describes exactly the image of that colour. So an evaluation's score can be
worked out by hand, and a test of it can fail.
"""

import re
import types

import numpy as np

COLOURS = {"red": (1.0, 0.0, 0.0), "green": (0.0, 1.0, 0.0), "blue": (0.0, 0.0, 1.0)}
_NUMBER = re.compile(r"\d+\.\d+")


def solid_image(colour, size=28):
    return np.broadcast_to(np.asarray(colour, np.float32), (size, size, 3)).copy()


def save_image(path, pixels):
    from PIL import Image

    Image.fromarray(np.round(np.asarray(pixels) * 255).astype(np.uint8)).save(path)


class ColourModel:
    """Has what the file evaluations and `keras-tips` inference use of a
    `TIPSModel`; records the largest batch of images it was given."""

    patch_size = 14

    def __init__(self, image_size=28):
        self.preprocessor = types.SimpleNamespace(
            image_converter=types.SimpleNamespace(image_size=(image_size, image_size))
        )
        self.largest_batch = 0
        self.images_seen = 0

    def encode_images(self, images, batch_size=32, return_value_patches=False):
        images = np.asarray(images, np.float32)
        self.largest_batch = max(self.largest_batch, len(images))
        self.images_seen += len(images)
        b, h, w, _ = images.shape
        p = self.patch_size
        patches = images.reshape(b, h // p, p, w // p, p, 3).mean(axis=(2, 4))
        patches = patches.reshape(b, -1, 3)
        colour = images.mean(axis=(1, 2))
        outputs = {"cls_1": colour, "cls_2": colour.copy(), "patches": patches}
        if return_value_patches:
            outputs["value_patches"] = patches.copy()
        return outputs

    def encode_texts(self, texts, batch_size=256):
        rows = []
        for text in texts:
            numbers = _NUMBER.findall(text)
            if len(numbers) == 3:
                rows.append([float(n) for n in numbers])
                continue
            row = np.zeros(3, np.float32)
            for word, one_hot in COLOURS.items():
                if word in text:
                    row += one_hot
            rows.append(row)
        return np.asarray(rows, np.float32)

    def temperature_for(self, cls_token="cls_1"):
        return 0.01

    def zero_shot_logits(self, image_embeddings, text_embeddings, cls_token="cls_1"):
        def unit(x):
            x = np.asarray(x, np.float32)
            return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)

        return unit(image_embeddings) @ unit(text_embeddings).T / self.temperature_for(cls_token)
