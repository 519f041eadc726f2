"""A user's own image folder + JSONL index trains as the shapes demo does.

The images here are not shapes scenes: four kinds of landscape-like photo
(beach, forest, snow, sunset: bands of sky, middle and ground whose
colours, heights and lighting vary), written as PNG files with a JSONL index
of noisy alt-text and descriptive captions, and a SentencePiece vocabulary
built from the captions — the files a user brings. The tiny recipe trains
on them through `data.source="jsonl"` and zero-shot classifies unseen
photos far above chance.
"""

import json
import os

import numpy as np
import pytest
from PIL import Image

from keras_tips.data.vocabulary import train_sentencepiece

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = os.path.join(ROOT, "recipes", "tiny_shapes.py")
KINDS = ("beach", "forest", "snow", "sunset")
SIZE = 56
TEMPLATES = ("a photo of a {}.", "{}.", "a picture of a {}.")
# What each kind of photo holds, top to bottom: (sky, middle, ground)
# colours, each drawn around its mean, and a description for the
# synthetic caption.
SCENES = {
    "beach": (((90, 160, 230), (40, 110, 190), (225, 200, 140)), "blue sky over the sea and a sandy shore"),
    "forest": (((150, 190, 150), (30, 95, 40), (70, 55, 35)), "green trees with dark trunks on brown soil"),
    "snow": (((185, 195, 210), (235, 235, 240), (215, 220, 230)), "a grey sky over white snowy hills"),
    "sunset": (((240, 120, 50), (200, 60, 60), (45, 30, 40)), "an orange sky over a dark horizon"),
}


def photo(kind, rng):
    """One (SIZE, SIZE, 3) uint8 landscape-like photo of a kind."""
    (sky, middle, ground), _ = SCENES[kind]
    first, second = sorted(rng.integers(int(SIZE * 0.25), int(SIZE * 0.8), size=2))
    rows = np.arange(SIZE)[:, None]
    bands = np.where(rows < first, 0, np.where(rows < second, 1, 2))
    colours = np.array([sky, middle, ground], np.float32) + rng.normal(0, 18, size=(3, 3))
    image = colours[np.broadcast_to(bands, (SIZE, SIZE))]
    if kind == "forest":  # dark vertical trunks
        for x in rng.integers(0, SIZE, size=int(rng.integers(3, 7))):
            image[second - 12: second, x: x + 2] = (60, 40, 25)
    # A vertical brightness gradient and pixel noise, as in photographs.
    image = image * (1.0 + 0.2 * (rows[..., None] / SIZE - 0.5) * rng.normal())
    image = image + rng.normal(0, 8, size=image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def write_photo_folder(folder, count, seed):
    """PNG files and a JSONL index (web-like and descriptive captions)."""
    rng = np.random.default_rng(seed)
    os.makedirs(os.path.join(folder, "images"), exist_ok=True)
    labels, lines = [], []
    for index in range(count):
        label = int(rng.integers(len(KINDS)))
        image = photo(KINDS[label], rng)
        name = f"images/{index:05d}.png"
        Image.fromarray(image).save(os.path.join(folder, name))
        caption = str(rng.choice(["{}", "a photo of a {}", "{} holiday", "my {} pictures"])).format(KINDS[label])
        if rng.random() < 0.15:  # alt-text that says nothing
            caption = str(rng.choice(["a photo", "holiday", "IMG_2041"]))
        lines.append({"image": name, "caption": caption,
                      "synthetic_caption": f"a photo of a {KINDS[label]}: {SCENES[KINDS[label]][1]}."})
        labels.append(label)
    with open(os.path.join(folder, "index.jsonl"), "w", encoding="utf-8") as f:
        f.writelines(json.dumps(line) + "\n" for line in lines)
    return os.path.join(folder, "index.jsonl"), np.array(labels)


@pytest.mark.slow
def test_tiny_recipe_learns_from_a_user_image_folder(tmp_path):
    from keras_tips.evaluation.zero_shot import build_zero_shot_classifier
    from keras_tips.evaluation.zero_shot import evaluate_zero_shot
    from keras_tips.models.tips_model import TIPSModel
    from keras_tips.training.loop import pretrain
    from keras_tips.training.loop import read_history
    from keras_tips.training.recipe import load_recipe

    index, _ = write_photo_folder(str(tmp_path / "train"), 600, seed=0)
    texts = [json.loads(line)[key] for line in open(index) for key in ("caption", "synthetic_caption")]
    texts += [t.format(k) for k in KINDS for t in TEMPLATES]
    tokenizer = tmp_path / "vocabulary.model"
    tokenizer.write_bytes(train_sentencepiece(texts))
    recipe = load_recipe(TINY, [
        "data.source='jsonl'",
        f"data.path='{index}'",
        f"data.tokenizer='{tokenizer}'",
        "data.sequence_length=16",
        f"data.image_size={SIZE}",
        "data.pipeline.local_image_size=28",
        "train.total_steps=300",
        "train.steps_per_checkpoint=150",
        "objective.self_distillation_start_step=100",
    ])
    pretrain(recipe, str(tmp_path / "run"), verbose=0)
    assert [h["step"] for h in read_history(str(tmp_path / "run"))] == [150, 300]

    model = TIPSModel.from_preset(str(tmp_path / "run" / "preset"))
    test_index, labels = write_photo_folder(str(tmp_path / "test"), 200, seed=1)
    images = np.stack([
        np.asarray(Image.open(tmp_path / "test" / json.loads(line)["image"]).convert("RGB"))
        for line in open(test_index)
    ]).astype("float32") / 255.0
    features = model.encode_images(images)
    classifier = build_zero_shot_classifier(model.encode_texts, list(KINDS), list(TEMPLATES))
    accuracy = evaluate_zero_shot({"cls_1": features["cls_1"]}, labels, classifier, ks=(1,))
    # Chance is 1/4.
    assert accuracy["cls_1/top1"] > 0.6, accuracy
