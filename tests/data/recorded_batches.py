"""Fingerprints of pretraining batches of the shapes dataset, to compare the
pipeline with a recorded revision of itself.

`tests/testdata/data/shapes_batches.json` holds the fingerprints made by
this module with the package at revision e79de78 (before synthetic
captions could be lists):

```
cd /path/to/keras_tips_at_e79de78 && PYTHONPATH=$PWD \
    python /path/to/this/tests/data/recorded_batches.py OUTPUT.json
```

It uses only the pipeline's public API of that revision, so it runs there
unchanged.
"""

import hashlib
import json
import os
import sys

import numpy as np

TESTDATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "testdata")
RECORDED = os.path.join(TESTDATA, "data", "shapes_batches.json")
TOKENIZER_PATH = os.path.join(TESTDATA, "tips_tiny", "tokenizer.model")


def array_fingerprint(value):
    value = np.ascontiguousarray(value)
    digest = hashlib.sha256(value.tobytes()).hexdigest()
    return f"{value.dtype}{list(value.shape)}:{digest}"


def shapes_batch_fingerprints(num_batches=3):
    """sha256 of every array of the first batches of a fixed shapes
    pipeline (crops, masks, tokens), and their caption strings."""
    from keras_tips.data import PipelineConfig
    from keras_tips.data import PretrainingPipeline
    from keras_tips.data import ShapesDataset
    from keras_tips.data.pipeline import BATCH_KEYS
    from keras_tips.models.tips_tokenizer import TIPSTokenizer

    source = ShapesDataset("train", 24, 56, seed=5).image_text_source()
    config = PipelineConfig(
        batch_size=4,
        global_image_size=56,
        local_crop_count=2,
        local_image_size=28,
        seed=3,
        include_texts=True,
    )
    tokenizer = TIPSTokenizer(proto=TOKENIZER_PATH, sequence_length=16)
    batches = []
    with PretrainingPipeline(source, config, tokenizer.tokenize_numpy) as pipeline:
        for _ in range(num_batches):
            batch = next(pipeline)
            record = {key: array_fingerprint(batch[key]) for key in BATCH_KEYS}
            for key in ("web_caption", "synthetic_caption"):
                record[key] = [str(text) for text in batch[key]]
            batches.append(record)
    return batches


def shapes_vocabulary_fingerprint():
    """sha256 of a small shapes vocabulary (its words and their ids)."""
    from keras_tips.data.vocabulary import shapes_vocabulary

    return hashlib.sha256(shapes_vocabulary(num_examples=100)).hexdigest()


def record():
    return {
        "batches": shapes_batch_fingerprints(),
        "vocabulary": shapes_vocabulary_fingerprint(),
    }


if __name__ == "__main__":
    with open(sys.argv[1], "w", encoding="utf-8") as f:
        json.dump(record(), f, indent=1)
        f.write("\n")
