"""Bad records are converted or skipped, counted by kind, never a crash."""

import io
import logging

import numpy as np
import pytest
from PIL import Image

from keras_tips.data import InMemoryImageTextSource
from keras_tips.data import JsonlImageTextSource
from keras_tips.data import PipelineConfig
from keras_tips.data import PretrainingPipeline
from keras_tips.data import stats
from keras_tips.data.decoding import ImageDecodeError
from keras_tips.data.decoding import clean_caption
from keras_tips.data.decoding import decode_image
from tests.data.conftest import encode
from tests.data.conftest import png_header_only
from tests.data.conftest import rgb_image


def record_id(web_caption, synthetic_caption):
    """The record name from its captions ("record NAME" / "web record NAME")."""
    if synthetic_caption:
        return synthetic_caption.removeprefix("record ")
    return web_caption.removeprefix("web record ")


@pytest.mark.parametrize("training", [False, True])
def test_good_records_arrive_bad_ones_are_counted_by_kind(
    tokenizer, bad_records_dir, training, caplog
):
    config = PipelineConfig(
        batch_size=3,
        global_image_size=28,
        local_crop_count=1,
        local_image_size=14,
        training=training,
        num_epochs=1,
        drop_remainder=False,
        include_texts=True,
        max_skipped_fraction=0.5,
    )
    source = JsonlImageTextSource(bad_records_dir["jsonl_path"])
    with caplog.at_level(logging.INFO, logger="keras_tips.data"):
        with PretrainingPipeline(source, config, tokenizer) as pipeline:
            batches = list(pipeline)
    arrived = {}
    for batch in batches:
        assert np.isfinite(batch["global_images"]).all()
        assert (
            0 <= batch["global_images"].min()
            and batch["global_images"].max() <= 1
        )
        for row in range(len(batch["has_web"])):
            name = record_id(
                str(batch["web_caption"][row]),
                str(batch["synthetic_caption"][row]),
            )
            arrived[name] = {key: value[row] for key, value in batch.items()}
    assert sorted(arrived) == sorted(bad_records_dir["kept"])

    # Unusable captions are flagged, and their token rows are all padding.
    for name, has_web, has_synthetic in [
        ("empty_web", False, True),
        ("bad_utf8_web", False, True),
        ("no_synthetic", True, False),
        ("good0", True, True),
    ]:
        row = arrived[name]
        assert (
            row["has_web"] == has_web and row["has_synthetic"] == has_synthetic
        )
        assert row["web_padding_mask"].any() == has_web
        assert row["synthetic_padding_mask"].any() == has_synthetic

    data_stats = pipeline.stats
    assert data_stats.counts == bad_records_dir["counts"]
    assert data_stats.records_seen == bad_records_dir["num_lines"]
    assert data_stats.records_skipped == bad_records_dir["num_skipped"]
    assert data_stats.records_kept == len(bad_records_dir["kept"])
    assert any("missing_file=1" in message for message in caplog.messages)
    assert data_stats.skipped_examples[stats.MISSING_FILE] == [
        "images/missing.img"
    ]
    assert set(data_stats.skipped_examples) == set(data_stats.skip_counts())
    assert any(
        "Skipping record 'images/bomb.img': too_large_image" in message
        for message in caplog.messages
    )


def test_converted_images_have_the_right_values(tokenizer, bad_records_dir):
    """Grayscale, 16-bit and transparent images are not silently wrong."""
    config = PipelineConfig(
        batch_size=1,
        global_image_size=14,
        local_crop_count=0,
        training=False,
        num_epochs=1,
        include_texts=True,
    )
    source = JsonlImageTextSource(bad_records_dir["jsonl_path"])
    images = {}
    with PretrainingPipeline(source, config, tokenizer) as pipeline:
        for batch in pipeline:
            name = record_id(
                str(batch["web_caption"][0]), str(batch["synthetic_caption"][0])
            )
            images[name] = batch["global_images"][0]
    # 8-bit gray 100 -> RGB 100/255; 16-bit 32768 -> 128/255 (not clipped to
    # white); transparent black -> the white background.
    np.testing.assert_allclose(images["gray"], 100 / 255, atol=1e-6)
    np.testing.assert_allclose(images["sixteen"], 128 / 255, atol=1e-6)
    np.testing.assert_allclose(images["rgba"], 1.0, atol=1e-6)
    np.testing.assert_allclose(
        images["cmyk"], 1.0, atol=1 / 255
    )  # CMYK 0 = white


def test_mostly_bad_dataset_stops_with_the_counts(tokenizer, tmp_path):
    good = encode(rgb_image(0))
    records = [
        {
            "image": good if index % 5 == 0 else None,
            "caption": f"record {index}",
        }
        for index in range(10)
    ]
    config = PipelineConfig(
        batch_size=2,
        global_image_size=14,
        local_crop_count=0,
        max_skipped_fraction=0.5,
        skip_check_window=20,
    )
    with PretrainingPipeline(
        InMemoryImageTextSource(records), config, tokenizer
    ) as pipeline:
        with pytest.raises(ValueError, match="mostly bad") as error:
            for _ in range(10):
                next(pipeline)
    message = str(error.value)
    assert "80.0 %" in message and "missing_file" in message


def test_mostly_bad_finite_dataset_stops_at_its_end(tokenizer):
    records = [{"image": b"", "caption": "x"}] * 3 + [
        {"image": encode(rgb_image(1)), "caption": "y"}
    ]
    config = PipelineConfig(
        batch_size=1, global_image_size=14, local_crop_count=0, num_epochs=1
    )
    with PretrainingPipeline(
        InMemoryImageTextSource(records), config, tokenizer
    ) as pipeline:
        with pytest.raises(
            ValueError, match=r"3 of the first 4 records.*empty_file"
        ):
            list(pipeline)


def test_dataset_without_any_usable_record_does_not_hang(tokenizer):
    records = [{"image": None, "caption": "nothing"}] * 5
    config = PipelineConfig(
        batch_size=2,
        global_image_size=14,
        local_crop_count=0,
        max_skipped_fraction=None,  # even with the fraction check off
        skip_check_window=50,
    )
    with PretrainingPipeline(
        InMemoryImageTextSource(records), config, tokenizer
    ) as pipeline:
        with pytest.raises(ValueError, match="No usable record"):
            next(pipeline)


def test_a_source_that_raises_gives_invalid_records(tokenizer):
    class FlakySource:
        def __len__(self):
            return 6

        def __getitem__(self, index):
            if index % 3 == 0:
                raise OSError("disk hiccup")
            return {
                "image": encode(rgb_image(index)),
                "caption": f"record {index}",
            }

    config = PipelineConfig(
        batch_size=4, global_image_size=14, local_crop_count=0, num_epochs=1
    )
    with PretrainingPipeline(FlakySource(), config, tokenizer) as pipeline:
        assert len(list(pipeline)) == 1
    assert pipeline.stats.counts[stats.INVALID_RECORD] == 2
    assert pipeline.stats.records_skipped == 2


@pytest.mark.parametrize(
    "data, kind",
    [
        (b"", stats.EMPTY_FILE),
        (b"GIF89a but not really", stats.UNREADABLE_IMAGE),
        (png_header_only(100_000, 100_000), stats.TOO_LARGE_IMAGE),
        (encode(rgb_image(0, 50))[:200], stats.TRUNCATED_IMAGE),
    ],
)
def test_decode_image_reports_the_kind(data, kind):
    with pytest.raises(ImageDecodeError) as error:
        decode_image(data)
    assert error.value.kind == kind


def test_decode_image_pixel_limit_is_checked_before_decoding():
    data = encode(rgb_image(0, 40))  # 40 x 48 pixels
    decode_image(data, max_pixels=40 * 48)
    with pytest.raises(ImageDecodeError) as error:
        decode_image(data, max_pixels=40 * 48 - 1)
    assert error.value.kind == stats.TOO_LARGE_IMAGE


@pytest.mark.parametrize(
    "image, kinds",
    [
        (Image.new("1", (8, 8), 1), (stats.CONVERTED_GRAYSCALE,)),
        (
            Image.new("LA", (8, 8), (50, 255)),
            (stats.CONVERTED_GRAYSCALE, stats.CONVERTED_ALPHA),
        ),
        (Image.new("P", (8, 8), 3), ()),
        (Image.new("RGB", (8, 8), (1, 2, 3)), ()),
    ],
)
def test_decode_image_modes(image, kinds):
    rgb, conversions = decode_image(encode(image))
    assert rgb.dtype == np.uint8 and rgb.shape == (8, 8, 3)
    assert conversions == kinds


def test_decode_image_arrays():
    values = np.full((4, 5), 65535, dtype=np.uint16)
    rgb, kinds = decode_image(values)
    assert rgb.shape == (4, 5, 3) and (rgb == 255).all()
    assert kinds == (stats.CONVERTED_GRAYSCALE, stats.CONVERTED_16BIT)
    with pytest.raises(ImageDecodeError):
        decode_image(np.zeros((4, 5, 2), np.uint8))


def test_exif_orientation_is_applied():
    image = Image.new("RGB", (20, 10), (255, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", exif=exif)
    rgb, _ = decode_image(buffer.getvalue())
    assert rgb.shape == (20, 10, 3)


@pytest.mark.parametrize(
    "caption, expected",
    [
        (None, ("", "missing")),
        ("", ("", "empty")),
        (" \n\t ", ("", "empty")),
        (b"\xff\xfe", ("", "not_utf8")),
        ("bad \udcff escape", ("", "not_utf8")),
        (" a  red\ncircle ", ("a red circle", None)),
        ("café".encode("utf-8"), ("café", None)),
        (42, ("", "missing")),
    ],
)
def test_clean_caption(caption, expected):
    assert clean_caption(caption) == expected
