"""Pretraining pipeline: batch contract, masks, determinism, resume, shards."""

import dataclasses
import json

import numpy as np
import pytest

from keras_tips.data import AugmentationConfig
from keras_tips.data import InMemoryImageTextSource
from keras_tips.data import JsonlImageTextSource
from keras_tips.data import PatchMaskConfig
from keras_tips.data import PipelineConfig
from keras_tips.data import PretrainingExampleTransform
from keras_tips.data import PretrainingPipeline
from keras_tips.data import ShapesDataset
from keras_tips.data import block_patch_mask
from keras_tips.data.pipeline import BATCH_KEYS
from keras_tips.data.transforms import CAPTIONED_CROP
from tests.data.conftest import SEQUENCE_LENGTH


def shapes_source(num_examples=40, image_size=56):
    return ShapesDataset(
        "train", num_examples, image_size, seed=5
    ).image_text_source()


def take(pipeline, count):
    return [next(pipeline) for _ in range(count)]


def assert_same_batches(expected, actual):
    assert len(expected) == len(actual)
    for index, (a, b) in enumerate(zip(expected, actual)):
        assert a.keys() == b.keys()
        for key in a:
            np.testing.assert_array_equal(
                a[key], b[key], err_msg=f"batch {index} {key}"
            )


def text_source(count):
    """Records identified by their captions ("record 3"), random images."""
    rng = np.random.default_rng(0)
    return InMemoryImageTextSource(
        [
            {
                "image": rng.integers(0, 256, (20, 24, 3), dtype=np.uint8),
                "caption": f"web {index}",
                "synthetic_caption": f"record {index}",
            }
            for index in range(count)
        ]
    )


@pytest.mark.parametrize(
    "batch_size, global_size, local_count, local_size, mask_ratio, mask_mode",
    [
        (4, 56, 0, 28, 0.75, "random"),
        (3, 28, 2, 14, 0.5, "block"),
        (2, 42, 1, 20, 0.0, "random"),
        (2, 70, 3, 28, 0.3, "block"),
    ],
)
def test_batch_contract(
    tokenizer,
    batch_size,
    global_size,
    local_count,
    local_size,
    mask_ratio,
    mask_mode,
):
    config = PipelineConfig(
        batch_size=batch_size,
        global_image_size=global_size,
        local_crop_count=local_count,
        local_image_size=local_size,
        mask=PatchMaskConfig(ratio=mask_ratio, mode=mask_mode),
        augmentation=AugmentationConfig(contrastive_crop=CAPTIONED_CROP),
    )
    with PretrainingPipeline(shapes_source(), config, tokenizer) as pipeline:
        batches = take(pipeline, 3)
    num_patches = (global_size // 14) ** 2
    expected_keys = set(BATCH_KEYS) - (
        {"local_images"} if local_count == 0 else set()
    )
    for batch in batches:
        assert set(batch) == expected_keys
        for key in ("global_images", "contrastive_images"):
            images = batch[key]
            assert images.dtype == np.float32
            assert images.shape == (batch_size, global_size, global_size, 3)
            assert 0.0 <= images.min() and images.max() <= 1.0
        if local_count:
            local = batch["local_images"]
            assert local.dtype == np.float32
            assert local.shape == (
                batch_size,
                local_count,
                local_size,
                local_size,
                3,
            )
            assert 0.0 <= local.min() and local.max() <= 1.0
        mask = batch["patch_mask"]
        assert mask.dtype == bool and mask.shape == (batch_size, num_patches)
        np.testing.assert_array_equal(
            mask.sum(axis=1), round(mask_ratio * num_patches)
        )
        for name in ("web", "synthetic"):
            ids = batch[f"{name}_token_ids"]
            padding = batch[f"{name}_padding_mask"]
            assert ids.dtype == np.int32 and ids.shape == (
                batch_size,
                SEQUENCE_LENGTH,
            )
            assert padding.dtype == bool and padding.shape == ids.shape
            assert batch[f"has_{name}"].dtype == bool
            assert batch[f"has_{name}"].shape == (batch_size,)
            assert batch[f"has_{name}"].all()
        # Shapes scenes always have a caption, so every row has real tokens.
        assert batch["synthetic_padding_mask"].any(axis=1).all()


def test_tokens_are_the_tokenizer_output_of_the_captions(tokenizer):
    config = PipelineConfig(
        batch_size=4,
        global_image_size=28,
        local_crop_count=0,
        include_texts=True,
    )
    with PretrainingPipeline(shapes_source(), config, tokenizer) as pipeline:
        batch = next(pipeline)
    for name in ("web", "synthetic"):
        ids, padding = tokenizer(list(batch[f"{name}_caption"]))
        np.testing.assert_array_equal(batch[f"{name}_token_ids"], ids)
        np.testing.assert_array_equal(batch[f"{name}_padding_mask"], padding)
    # The spatial caption survives: it names a region of the 3x3 grid.
    assert all(" in the " in text for text in batch["synthetic_caption"])


def test_mask_probability_masks_whole_images_or_none(tokenizer):
    config = PipelineConfig(
        batch_size=16,
        global_image_size=56,
        local_crop_count=0,
        mask=PatchMaskConfig(ratio=0.5, probability=0.5),
    )
    with PretrainingPipeline(shapes_source(), config, tokenizer) as pipeline:
        counts = np.concatenate(
            [b["patch_mask"].sum(axis=1) for b in take(pipeline, 4)]
        )
    assert set(counts.tolist()) == {0, 8}
    assert 10 <= (counts == 8).sum() <= 54  # ~32 of 64; both outcomes happen


def test_same_seed_same_batches_other_seed_other_batches(tokenizer):
    config = PipelineConfig(
        batch_size=4,
        global_image_size=28,
        local_crop_count=2,
        local_image_size=14,
        seed=7,
    )
    runs = []
    for seed in (7, 7, 8):
        with PretrainingPipeline(
            shapes_source(), dataclasses.replace(config, seed=seed), tokenizer
        ) as pipeline:
            runs.append(take(pipeline, 4))
    assert_same_batches(runs[0], runs[1])
    assert not np.array_equal(
        runs[0][0]["global_images"], runs[2][0]["global_images"]
    )


def test_resume_continues_on_the_next_unseen_batch(tokenizer):
    # A short dataset repeated, so the resumed part crosses an epoch boundary.
    config = PipelineConfig(
        batch_size=3,
        global_image_size=28,
        local_crop_count=1,
        local_image_size=14,
        seed=1,
    )
    source = shapes_source(num_examples=10)
    with PretrainingPipeline(source, config, tokenizer) as pipeline:
        uninterrupted = take(pipeline, 9)
    with PretrainingPipeline(source, config, tokenizer) as pipeline:
        take(pipeline, 4)
        state = json.loads(json.dumps(pipeline.get_state()))  # checkpointable
    with PretrainingPipeline(source, config, tokenizer) as pipeline:
        pipeline.set_state(state)
        resumed = take(pipeline, 5)
        assert pipeline.stats.records_seen == 27
    assert_same_batches(uninterrupted[4:], resumed)


def test_one_worker_process_is_deterministic_resumes_and_counts(
    tokenizer, bad_records_dir
):
    """With a worker: same batches as in-process, exact resume, full counts."""
    source = JsonlImageTextSource(bad_records_dir["jsonl_path"])
    config = PipelineConfig(
        batch_size=4,
        global_image_size=28,
        local_crop_count=1,
        local_image_size=14,
        seed=3,
        worker_count=0,
        max_skipped_fraction=None,
    )
    with PretrainingPipeline(source, config, tokenizer) as pipeline:
        in_process = take(pipeline, 6)
        in_process_stats = pipeline.stats.to_dict()

    with_worker = dataclasses.replace(config, worker_count=1)
    with PretrainingPipeline(source, with_worker, tokenizer) as pipeline:
        first = take(pipeline, 6)
        assert pipeline.stats.to_dict() == in_process_stats
        state = json.loads(json.dumps(pipeline.get_state()))
        uninterrupted = take(pipeline, 3)
    assert_same_batches(in_process, first)
    assert in_process_stats["records_skipped"] > 0

    with PretrainingPipeline(source, with_worker, tokenizer) as pipeline:
        pipeline.set_state(state)
        assert_same_batches(uninterrupted, take(pipeline, 3))


@pytest.mark.slow
def test_two_worker_processes_resume(tokenizer):
    config = PipelineConfig(
        batch_size=2,
        global_image_size=28,
        local_crop_count=0,
        worker_count=2,
        seed=2,
    )
    source = shapes_source(num_examples=12)
    with PretrainingPipeline(source, config, tokenizer) as pipeline:
        take(pipeline, 3)
        state = pipeline.get_state()
        expected = take(pipeline, 4)
    with PretrainingPipeline(source, config, tokenizer) as pipeline:
        pipeline.set_state(state)
        assert_same_batches(expected, take(pipeline, 4))


def test_epochs_cover_every_record_once_each_shuffled_differently(tokenizer):
    config = PipelineConfig(
        batch_size=1,
        global_image_size=14,
        local_crop_count=0,
        num_epochs=2,
        include_texts=True,
    )
    with PretrainingPipeline(text_source(12), config, tokenizer) as pipeline:
        texts = [str(b["synthetic_caption"][0]) for b in pipeline]
    first, second = texts[:12], texts[12:]
    expected = sorted(f"record {i}" for i in range(12))
    assert sorted(first) == expected and sorted(second) == expected
    assert first != second
    assert first != expected  # shuffled


def test_shards_are_disjoint_and_equal_sized(tokenizer):
    seen = []
    for shard_index in range(3):
        config = PipelineConfig(
            batch_size=2,
            global_image_size=14,
            local_crop_count=0,
            num_epochs=1,
            shard_index=shard_index,
            shard_count=3,
            include_texts=True,
        )
        with PretrainingPipeline(
            text_source(10), config, tokenizer
        ) as pipeline:
            seen.append([t for b in pipeline for t in b["synthetic_caption"]])
    assert [len(texts) for texts in seen] == [
        2,
        2,
        2,
    ]  # 3 per shard, drop_remainder
    with PretrainingPipeline(
        text_source(10),
        PipelineConfig(
            batch_size=3,
            global_image_size=14,
            local_crop_count=0,
            num_epochs=1,
            shard_index=1,
            shard_count=3,
            include_texts=True,
            drop_remainder=False,
        ),
        tokenizer,
    ) as pipeline:
        shard = sorted(t for b in pipeline for t in b["synthetic_caption"])
    assert shard == ["record 1", "record 4", "record 7"]
    all_texts = [t for texts in seen for t in texts]
    assert len(set(all_texts)) == len(all_texts)


def test_eval_mode_resizes_and_centre_crops(tokenizer):
    image = np.zeros((20, 40, 3), dtype=np.uint8)
    image[:, 10:30] = 255  # the centre square is white, the sides black
    source = InMemoryImageTextSource(
        [{"image": image, "caption": "a square"}] * 3
    )
    config = PipelineConfig(
        batch_size=3,
        global_image_size=14,
        local_crop_count=2,
        training=False,
        num_epochs=1,
    )
    with PretrainingPipeline(source, config, tokenizer) as pipeline:
        batch = next(pipeline)
    assert "local_images" not in batch
    # The white centre square fills the output; only the resampling filter's
    # reach past the crop edges darkens the outermost columns a little.
    np.testing.assert_allclose(
        batch["global_images"][:, :, 1:-1], 1.0, atol=1e-6
    )
    assert batch["global_images"].min() > 0.9
    assert not batch["patch_mask"].any()
    assert not batch["has_synthetic"].any() and batch["has_web"].all()
    assert not batch["synthetic_padding_mask"].any()


def _left_right_source():
    return InMemoryImageTextSource(
        [
            {
                "image": np.zeros((16, 16, 3), np.uint8),
                "caption": "a red circle on the left",
                "synthetic_caption": (
                    "a red circle in the top left, a square on the right"
                ),
            }
        ]
        * 2
    )


def _flip_only(augmentation, kind):
    crop = getattr(augmentation, kind)
    return dataclasses.replace(
        augmentation, **{kind: dataclasses.replace(crop, flip_probability=1.0)}
    )


@pytest.mark.parametrize(
    "separate, flipped_kind, swapped",
    [
        (True, "contrastive_crop", True),
        (True, "global_crop", False),
        (True, "local_crop", False),
        (False, "global_crop", True),
    ],
)
def test_captions_swap_left_and_right_with_their_crop(
    tokenizer, separate, flipped_kind, swapped
):
    """Captions follow the flip of the crop they are paired with: the
    contrastive crop, or the global crop when there is no separate one."""
    augmentation = AugmentationConfig.none(separate_contrastive_crop=separate)
    config = PipelineConfig(
        batch_size=2,
        global_image_size=14,
        local_crop_count=1,
        local_image_size=14,
        augmentation=_flip_only(augmentation, flipped_kind),
        include_texts=True,
    )
    with PretrainingPipeline(_left_right_source(), config, tokenizer) as pipeline:
        batch = next(pipeline)
    assert ("contrastive_images" in batch) == separate
    if swapped:
        web = "a red circle on the right"
        synthetic = "a red circle in the top right, a square on the left"
    else:
        web = "a red circle on the left"
        synthetic = "a red circle in the top left, a square on the right"
    assert list(batch["web_caption"]) == [web] * 2
    assert list(batch["synthetic_caption"]) == [synthetic] * 2


def test_config_and_tokenizer_errors(tokenizer):
    with pytest.raises(ValueError, match="multiple of `patch_size`"):
        PipelineConfig(global_image_size=50)
    with pytest.raises(ValueError, match="mode"):
        PipelineConfig(mask=PatchMaskConfig(mode="checkerboard"))
    with pytest.raises(ValueError, match="ratio"):
        PipelineConfig(mask={"ratio": 1.5})
    with pytest.raises(ValueError, match="must be a PatchMaskConfig"):
        PipelineConfig(mask=0.5)
    with pytest.raises(ValueError, match="shard_index"):
        PipelineConfig(shard_index=2, shard_count=2)
    with pytest.raises(ValueError, match="text_tokenizer"):
        PretrainingPipeline(shapes_source(), PipelineConfig(), None)
    with pytest.raises(ValueError, match="both"):
        PipelineConfig(shard_count=3)
    with pytest.raises(ValueError, match="2 records, fewer than the 3 shards"):
        PretrainingPipeline(
            text_source(2), PipelineConfig(shard_index=0, shard_count=3), tokenizer
        )

    def wrong_shapes(texts):
        return np.zeros((len(texts),), np.int32), np.zeros((len(texts),), bool)

    config = PipelineConfig(
        batch_size=2, global_image_size=14, local_crop_count=0
    )
    with PretrainingPipeline(text_source(4), config, wrong_shapes) as pipeline:
        with pytest.raises(ValueError, match="shape"):
            next(pipeline)


def test_unset_recipe_fields_are_refused(tokenizer):
    for field in ("global_image_size", "patch_size", "seed"):
        config = dataclasses.replace(PipelineConfig(), **{field: None})
        with pytest.raises(ValueError, match=f"{field} not set"):
            PretrainingPipeline(shapes_source(), config, tokenizer)


def test_the_whole_mask_config_reaches_the_masker():
    mask = PatchMaskConfig(ratio=0.5, mode="block", min_block_patches=6)
    config = PipelineConfig(global_image_size=112, local_crop_count=0, mask=mask)
    masker = PretrainingExampleTransform(config).masker
    assert masker.config is mask
    drawn = masker(np.random.default_rng(3))
    for min_block_patches, same in ((6, True), (4, False)):
        expected = block_patch_mask(
            8, 0.5, np.random.default_rng(3), min_block_patches=min_block_patches
        )
        assert np.array_equal(drawn, expected) == same


def test_each_process_reads_its_own_shard_by_default(monkeypatch, tokenizer):
    """Left unset, the shard is this process's index of the process count;
    a configured split with fewer shards than processes is refused."""
    from keras_tips.data import pipeline_config

    monkeypatch.setattr(pipeline_config, "process_count", lambda: 2)
    monkeypatch.setattr(pipeline_config, "process_index", lambda: 1)
    config = PipelineConfig(
        batch_size=3, global_image_size=14, local_crop_count=0,
        shuffle=False, num_epochs=1, include_texts=True, drop_remainder=False,
    )
    assert config.shard() == (1, 2)
    with PretrainingPipeline(text_source(6), config, tokenizer) as pipeline:
        texts = [t for batch in pipeline for t in batch["synthetic_caption"]]
    assert texts == ["record 1", "record 3", "record 5"]
    assert dataclasses.replace(config, shard_index=3, shard_count=4).shard() == (3, 4)
    with pytest.raises(ValueError, match="shard_count=1 is fewer than the 2 processes"):
        dataclasses.replace(config, shard_index=0, shard_count=1).shard()
    with pytest.raises(ValueError, match="fewer than the 2 shards"):
        PretrainingPipeline(text_source(1), config, tokenizer)
