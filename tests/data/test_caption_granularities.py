"""Synthetic captions at several granularities: a record's synthetic caption
may be a list, one entry is drawn per example and step from the element's
own generator, the draw resumes exactly, and records with one caption give
the batches they gave before lists existed."""

import collections
import dataclasses
import json
import struct

import numpy as np
import pytest

from keras_tips.data import ArrayRecordImageTextSource
from keras_tips.data import InMemoryImageTextSource
from keras_tips.data import JsonlImageTextSource
from keras_tips.data import PipelineConfig
from keras_tips.data import PretrainingExampleTransform
from keras_tips.data import PretrainingPipeline
from keras_tips.data import ShapesDataset
from keras_tips.data import deserialize_record
from keras_tips.data import serialize_record
from keras_tips.data import stats
from keras_tips.data import write_array_record
from keras_tips.data import write_shapes_jsonl
from keras_tips.data.decoding import clean_caption_choices
from keras_tips.data.pipeline import BATCH_KEYS
from keras_tips.data.records import RECORD_MAGIC
from keras_tips.data.transforms import swap_left_right
from tests.data import recorded_batches
from tests.data.conftest import write_jsonl

GRANULARITIES = ("short", "medium", "long")


def take(pipeline, count):
    return [next(pipeline) for _ in range(count)]


def granular_source(count):
    """Records whose synthetic caption is `["record i short", ... long]`."""
    rng = np.random.default_rng(0)
    return InMemoryImageTextSource(
        [
            {
                "image": rng.integers(0, 256, (20, 24, 3), dtype=np.uint8),
                "caption": f"web {index}",
                "synthetic_caption": [f"record {index} {g}" for g in GRANULARITIES],
            }
            for index in range(count)
        ]
    )


def small_config(**changes):
    fields = dict(
        batch_size=3,
        global_image_size=28,
        local_crop_count=1,
        local_image_size=14,
        seed=1,
        include_texts=True,
    )
    fields.update(changes)
    return PipelineConfig(**fields)


def test_clean_caption_choices():
    assert clean_caption_choices(" a  cat ") == (["a cat"], [])
    assert clean_caption_choices(None) == ([], ["missing"])
    assert clean_caption_choices(b"\xff") == ([], ["not_utf8"])
    assert clean_caption_choices([]) == ([], ["missing"])
    assert clean_caption_choices(["a cat", " ", None, b"\xff", b"a black  cat"]) == (
        ["a cat", "a black cat"],
        ["empty", "missing", "not_utf8"],
    )
    assert clean_caption_choices(("x" * 10, "y"), max_chars=4) == (["xxxx", "y"], [])


def test_batches_without_lists_are_the_recorded_ones():
    with open(recorded_batches.RECORDED, encoding="utf-8") as f:
        expected = json.load(f)
    assert recorded_batches.record() == expected


def test_shapes_lists_only_change_the_synthetic_caption(tokenizer):
    dataset = ShapesDataset("train", 24, 56, seed=5)
    config = small_config(batch_size=4, global_image_size=56, local_image_size=28)
    runs = {}
    for on in (False, True):
        source = dataset.image_text_source(multi_granularity_captions=on)
        with PretrainingPipeline(source, config, tokenizer) as pipeline:
            runs[on] = take(pipeline, 12)  # two epochs
    # A flipped crop swaps left and right in every caption it may draw.
    granularities_of = {}
    for i in range(len(dataset)):
        captions = dataset[i]["synthetic_captions"]
        granularities_of[captions[-1]] = captions
        granularities_of[swap_left_right(captions[-1])] = [
            swap_left_right(c) for c in captions
        ]
    drawn = collections.Counter()
    for plain, granular in zip(runs[False], runs[True]):
        # The draw comes after the crops and the mask, so these are unchanged.
        for key in BATCH_KEYS:
            if not key.startswith("synthetic"):
                np.testing.assert_array_equal(plain[key], granular[key], err_msg=key)
        np.testing.assert_array_equal(plain["web_caption"], granular["web_caption"])
        for full, text in zip(plain["synthetic_caption"], granular["synthetic_caption"]):
            drawn[granularities_of[full].index(text)] += 1
    assert set(drawn) == {0, 1, 2}, drawn
    record = dataset.image_text_source(multi_granularity_captions=True)[3]
    assert record["synthetic_caption"] == list(dataset[3]["synthetic_captions"])
    assert dataset.image_text_source()[3]["synthetic_caption"] == dataset[3]["synthetic_caption"]


def test_each_epoch_draws_again_and_the_same_seed_draws_the_same(tokenizer):
    config = small_config(batch_size=1, num_epochs=6, local_crop_count=0)
    runs = []
    for seed in (1, 1, 2):
        with PretrainingPipeline(
            granular_source(8), dataclasses.replace(config, seed=seed), tokenizer
        ) as pipeline:
            runs.append([str(b["synthetic_caption"][0]) for b in pipeline])
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]
    per_record = collections.defaultdict(list)
    for text in runs[0]:
        _, index, granularity = text.split()
        per_record[index].append(granularity)
    assert sorted(per_record) == [str(i) for i in range(8)]
    for index, draws in per_record.items():
        assert len(draws) == config.num_epochs
        assert len(set(draws)) > 1, (index, draws)  # not the same every epoch
    assert {g for draws in per_record.values() for g in draws} == set(GRANULARITIES)


def test_the_draw_resumes_exactly(tokenizer):
    # 10 records, batches of 3: the resumed part crosses epoch boundaries.
    source = granular_source(10)
    config = small_config()
    with PretrainingPipeline(source, config, tokenizer) as pipeline:
        uninterrupted = take(pipeline, 9)
    with PretrainingPipeline(source, config, tokenizer) as pipeline:
        take(pipeline, 4)
        state = json.loads(json.dumps(pipeline.get_state()))
    with PretrainingPipeline(source, config, tokenizer) as pipeline:
        pipeline.set_state(state)
        resumed = take(pipeline, 5)
    for index, (a, b) in enumerate(zip(uninterrupted[4:], resumed)):
        assert list(a["synthetic_caption"]) == list(b["synthetic_caption"]), index
        for key in BATCH_KEYS:
            np.testing.assert_array_equal(a[key], b[key], err_msg=f"{index} {key}")
    drawn = {t.rsplit(" ", 1)[1] for b in uninterrupted for t in b["synthetic_caption"]}
    assert drawn == set(GRANULARITIES)


def test_the_draw_is_the_elements_own_generator():
    config = small_config(training=False)
    transform = PretrainingExampleTransform(config)
    record = granular_source(1)[0]
    draws = {
        transform.random_map(dict(record), np.random.default_rng(seed))["synthetic_caption"]
        for seed in range(40)
    }
    assert draws == {f"record 0 {g}" for g in GRANULARITIES}
    example = transform.random_map(dict(record), np.random.default_rng(7))
    again = transform.random_map(dict(record), np.random.default_rng(7))
    assert example["synthetic_caption"] == again["synthetic_caption"]
    # One usable entry: no draw, the generator is left untouched.
    rng = np.random.default_rng(3)
    single = dict(record, synthetic_caption=["  ", "only one"])
    assert transform.random_map(single, rng)["synthetic_caption"] == "only one"
    assert rng.bit_generator.state == np.random.default_rng(3).bit_generator.state


def test_bad_entries_are_counted_and_skipped(tmp_path, tokenizer):
    jsonl = write_shapes_jsonl(tmp_path, 3, image_size=28)
    with open(jsonl, encoding="utf-8") as f:
        images = [json.loads(line)["image"] for line in f]
    lines = [
        # Two usable entries of four: one empty, one not a string.
        json.dumps({"image": images[0], "caption": "w0",
                    "synthetic_caption": ["s0 a", "   ", 5, "s0 b"]}).encode(),
        # No usable entry, but a web caption: kept without a synthetic one.
        json.dumps({"image": images[1], "caption": "w1",
                    "synthetic_caption": ["", None]}).encode(),
        # An empty list and no web caption: skipped, no caption at all.
        json.dumps({"image": images[2], "synthetic_caption": []}).encode(),
        # Bytes that are not UTF-8 in one entry.
        b'{"image": "' + images[0].encode() + b'", "synthetic_caption": ["s3", "\xff"]}',
    ]
    source = JsonlImageTextSource(write_jsonl(str(tmp_path), lines))
    assert source._entries[0][2] == ["s0 a", "   ", None, "s0 b"]
    config = small_config(batch_size=3, local_crop_count=0, num_epochs=1, shuffle=False)
    with PretrainingPipeline(source, config, tokenizer) as pipeline:
        (batch,) = list(pipeline)
        counts = pipeline.stats.counts
    assert pipeline.stats.records_skipped == 1
    assert counts[stats.NO_CAPTION] == 1
    assert counts["synthetic_caption_empty"] == 2
    assert counts["synthetic_caption_missing"] == 3  # 5, None and []
    assert counts["synthetic_caption_not_utf8"] == 1
    assert batch["synthetic_caption"][0] in ("s0 a", "s0 b")
    assert batch["synthetic_caption"][1] == "" and not batch["has_synthetic"][1]
    assert batch["synthetic_caption"][2] == "s3" and batch["has_synthetic"][2]


def test_record_lists_round_trip_and_single_captions_keep_their_bytes():
    data = serialize_record(
        image=b"img", caption="web", synthetic_caption=["short", "caf\udce9", ""],
        key="k",
    )
    record = deserialize_record(data)
    assert record["synthetic_caption"] == [b"short", b"caf\xe9", b""]
    assert record["caption"] == b"web" and record["image"] == b"img"
    assert deserialize_record(
        serialize_record(image=b"i", synthetic_caption=["x", None, "y"])
    )["synthetic_caption"] == [b"x", b"y"]
    assert deserialize_record(
        serialize_record(image=b"i", synthetic_caption=[])
    )["synthetic_caption"] is None

    # A single caption is written in the format of shards made before lists.
    header = json.dumps(
        {"fields": [["key", 1], ["image", 3], ["synthetic_caption", 4]]},
        separators=(",", ":"),
    ).encode()
    old = RECORD_MAGIC + struct.pack("<I", len(header)) + header + b"kimgfull"
    assert serialize_record(image=b"img", synthetic_caption="full", key="k") == old
    assert deserialize_record(old)["synthetic_caption"] == b"full"


@pytest.mark.parametrize(
    "fields",
    [
        [["synthetic_caption", 1], ["synthetic_captions", 1]],
        [["caption", 1], ["caption", 1]],
    ],
)
def test_records_with_both_forms_or_a_repeated_field_are_malformed(fields):
    header = json.dumps({"fields": fields}).encode()
    data = RECORD_MAGIC + struct.pack("<I", len(header)) + header + b"ab"
    with pytest.raises(ValueError, match="TIPS record"):
        deserialize_record(data)


def test_lists_survive_conversion_to_array_record(tmp_path, tokenizer):
    jsonl = write_shapes_jsonl(
        tmp_path / "data", 6, image_size=28, multi_granularity_captions=True
    )
    with open(jsonl, encoding="utf-8") as f:
        lines = [json.loads(line) for line in f]
    lines[1]["synthetic_caption"].insert(1, 7)  # not a string: left out, counted
    with open(jsonl, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(line) + "\n" for line in lines)
    summary = write_array_record(jsonl, tmp_path / "shards", 2, show_progress=False)
    assert summary["records_written"] == 6
    assert summary["caption_entries_dropped"] == 1
    shards = ArrayRecordImageTextSource(summary["shards"])
    jsonl_source = JsonlImageTextSource(jsonl)
    dataset = ShapesDataset("train", 6, 28, seed=0)
    for index in range(6):
        expected = list(dataset[index]["synthetic_captions"])
        assert [c.decode() for c in shards[index]["synthetic_caption"]] == expected
        from_jsonl = [c for c in jsonl_source[index]["synthetic_caption"] if c is not None]
        assert from_jsonl == expected
    # Both sources give the same batches: the draw does not depend on the
    # caption's type (str from JSONL, bytes from shards).
    config = small_config(batch_size=2, local_crop_count=0, global_image_size=28)
    results = []
    for source in (jsonl_source, shards):
        with PretrainingPipeline(source, config, tokenizer) as pipeline:
            results.append(take(pipeline, 6))
    for a, b in zip(*results):
        assert list(a["synthetic_caption"]) == list(b["synthetic_caption"])
        np.testing.assert_array_equal(a["global_images"], b["global_images"])


def test_the_shapes_vocabulary_learns_the_shorter_captions_only_when_asked():
    import sentencepiece as spm

    from keras_tips.data.vocabulary import shapes_vocabulary

    def unknown_words(vocabulary, texts):
        model = spm.SentencePieceProcessor(model_proto=vocabulary)
        return {
            piece
            for text in texts
            for piece, token in zip(
                model.encode(text.lower(), out_type=str), model.encode(text.lower())
            )
            if token == model.unk_id()
        }

    dataset = ShapesDataset("train", 60, 56, seed=4)
    texts = [c for i in range(60) for c in dataset[i]["synthetic_captions"]]
    assert unknown_words(shapes_vocabulary(num_examples=100), texts)  # "circle,"
    assert not unknown_words(
        shapes_vocabulary(num_examples=100, multi_granularity_captions=True), texts
    )
