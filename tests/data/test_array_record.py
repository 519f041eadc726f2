"""Record format, JSONL -> ArrayRecord conversion, sources and command line."""

import os
import runpy
import sys

import cloudpickle
import pytest

from keras_tips.data import ArrayRecordImageTextSource
from keras_tips.data import JsonlImageTextSource
from keras_tips.data import PipelineConfig
from keras_tips.data import PretrainingPipeline
from keras_tips.data import SkimagePhotosSource
from keras_tips.data import deserialize_record
from keras_tips.data import serialize_record
from keras_tips.data import stats
from keras_tips.data import write_array_record
from keras_tips.data import write_shapes_jsonl
from keras_tips.data.convert import main


def as_bytes(caption):
    if caption is None or isinstance(caption, bytes):
        return caption
    return caption.encode("utf-8", errors="surrogateescape")


def test_record_round_trip_keeps_missing_fields_and_raw_bytes():
    data = serialize_record(
        image=b"\x89PNG...",
        caption="caf\udce9",
        synthetic_caption=None,
        key="a/b.png",
    )
    record = deserialize_record(data)
    assert record["image"] == b"\x89PNG..."
    assert record["caption"] == b"caf\xe9"  # the original, non-UTF-8 bytes
    assert record["synthetic_caption"] is None
    assert record["key"] == "a/b.png" and record["error"] is None
    assert (
        deserialize_record(serialize_record(image=b"", caption=""))["image"]
        == b""
    )


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"not a record at all",
        b"TIPSREC1\xff\xff\x00\x00{}",
        serialize_record(image=b"1234", caption="x")[:-2],
        serialize_record(image=b"1234") + b"extra",
    ],
)
def test_malformed_records_raise_value_error(data):
    with pytest.raises(ValueError):
        deserialize_record(data)


def test_jsonl_to_array_record_round_trip(bad_records_dir, tmp_path):
    jsonl_path = bad_records_dir["jsonl_path"]
    output_dir = tmp_path / "shards"
    summary = write_array_record(
        jsonl_path, output_dir, num_shards=3, show_progress=False
    )
    assert [os.path.basename(p) for p in summary["shards"]] == [
        f"records-0000{i}-of-00003.array_record" for i in range(3)
    ]
    assert summary["skipped"] == {
        stats.MISSING_FILE: 1,
        stats.INVALID_RECORD: 2,
    }

    jsonl = JsonlImageTextSource(jsonl_path)
    expected = [
        jsonl[i] for i in range(len(jsonl)) if jsonl[i]["error"] is None
    ]
    shards = ArrayRecordImageTextSource(output_dir)
    assert len(shards) == len(expected) == summary["records_written"]
    for want, got in zip(expected, shards):
        assert got["key"] == want["key"]
        assert got["image"] == want["image"]
        assert got["caption"] == as_bytes(want["caption"])
        assert got["synthetic_caption"] == as_bytes(want["synthetic_caption"])
        assert got["error"] is None

    with pytest.raises(FileExistsError):
        write_array_record(
            jsonl_path, output_dir, num_shards=3, show_progress=False
        )
    write_array_record(
        jsonl_path, output_dir, 3, overwrite=True, show_progress=False
    )


def test_pipeline_reads_shards_like_the_jsonl_folder(
    tokenizer, bad_records_dir, tmp_path
):
    jsonl_path = bad_records_dir["jsonl_path"]
    write_array_record(jsonl_path, tmp_path / "shards", 2, show_progress=False)
    config = PipelineConfig(
        batch_size=2,
        global_image_size=28,
        local_crop_count=1,
        local_image_size=14,
        num_epochs=1,
        drop_remainder=False,
        max_skipped_fraction=None,
    )
    counts = {}
    for name, source in [
        ("jsonl", JsonlImageTextSource(jsonl_path)),
        (
            "shards",
            ArrayRecordImageTextSource(
                str(tmp_path / "shards" / "*.array_record")
            ),
        ),
    ]:
        with PretrainingPipeline(source, config, tokenizer) as pipeline:
            kept = sum(len(batch["has_web"]) for batch in pipeline)
        counts[name] = (kept, dict(pipeline.stats.counts))
    assert (
        counts["jsonl"][0]
        == counts["shards"][0]
        == len(bad_records_dir["kept"])
    )
    # The converter already dropped what it could not store.
    jsonl_counts = dict(counts["jsonl"][1])
    jsonl_counts.pop(stats.MISSING_FILE)
    jsonl_counts.pop(stats.INVALID_RECORD)
    assert counts["shards"][1] == jsonl_counts


def test_array_record_source_reports_garbage_records(tmp_path):
    from array_record.python.array_record_module import ArrayRecordWriter

    path = str(tmp_path / "mixed.array_record")
    writer = ArrayRecordWriter(path, "group_size:1")
    writer.write(serialize_record(image=b"abc", caption="ok"))
    writer.write(b"garbage")
    writer.write(serialize_record(caption="an image-less record"))
    writer.close()
    source = ArrayRecordImageTextSource(path)
    assert [source[i]["error"] for i in range(3)] == [
        None,
        stats.INVALID_RECORD,
        stats.MISSING_FILE,
    ]


def test_sources_survive_the_trip_to_worker_processes(
    bad_records_dir, tmp_path
):
    """Workers receive sources by (cloud)pickle, as grain sends them."""
    jsonl = JsonlImageTextSource(bad_records_dir["jsonl_path"])
    write_array_record(
        jsonl.jsonl_path, tmp_path / "shards", 2, show_progress=False
    )
    shards = ArrayRecordImageTextSource(tmp_path / "shards")
    shards[0]  # opens the readers, which must not travel
    for source in (jsonl, shards, SkimagePhotosSource()):
        copy = cloudpickle.loads(cloudpickle.dumps(source))
        assert len(copy) == len(source)
        assert copy[1] == source[1]


def test_command_line(bad_records_dir, tmp_path, capsys, monkeypatch):
    storable = (
        bad_records_dir["num_lines"] - 3
    )  # one missing file, two bad lines
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    assert "--num-shards" in capsys.readouterr().out

    output_dir = str(tmp_path / "cli")
    assert (
        main(
            [
                bad_records_dir["jsonl_path"],
                output_dir,
                "--num-shards",
                "2",
                "--quiet",
            ]
        )
        == 0
    )
    assert f"Wrote {storable} records to 2 shard(s)" in capsys.readouterr().out

    # `python -m keras_tips.data.convert` runs the same entry point.
    argv = [
        "convert",
        bad_records_dir["jsonl_path"],
        output_dir,
        "--overwrite",
        "--quiet",
    ]
    monkeypatch.setattr(sys, "argv", argv)
    # As in a fresh interpreter: the module is not imported yet.
    monkeypatch.delitem(sys.modules, "keras_tips.data.convert")
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_module("keras_tips.data.convert", run_name="__main__")
    assert exit_info.value.code == 0
    assert len(ArrayRecordImageTextSource(output_dir)) == storable


def test_shapes_jsonl_folder_feeds_the_converter(tmp_path):
    jsonl_path = write_shapes_jsonl(
        tmp_path / "shapes", num_examples=6, image_size=32
    )
    source = JsonlImageTextSource(jsonl_path)
    assert len(source) == 6 and source[0]["error"] is None
    summary = write_array_record(
        jsonl_path, tmp_path / "shards", 4, show_progress=False
    )
    assert summary["records_written"] == 6 and len(summary["shards"]) == 4
