"""Webdataset tar shards (img2dataset's layout) into ArrayRecord shards."""

import io
import json
import tarfile

import numpy as np
import pytest
from PIL import Image

from keras_tips.data import write_webdataset_array_record
from keras_tips.data.convert import main
from keras_tips.data.sources import ArrayRecordImageTextSource
from keras_tips.data.webdataset import iter_webdataset_samples


def _jpeg(seed):
    pixels = np.random.default_rng(seed).integers(0, 256, (8, 10, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG")
    return buffer.getvalue()


def _write_tar(path, members, mode="w"):
    with tarfile.open(path, mode) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def _json(value):
    return json.dumps(value).encode("utf-8")


@pytest.fixture
def shards(tmp_path):
    """Two tar shards as img2dataset writes them, with the cases a real
    crawl has: a caption in .txt only, in .json only, a synthetic caption,
    a sample without an image, a broken .json, and a non-string caption."""
    first = [
        ("000000000.jpg", _jpeg(0)),
        ("000000000.txt", b"a red bus "),
        ("000000000.json", _json({"url": "http://x/0", "caption": "ignored: .txt wins",
                                  "synthetic_caption": "a red double-decker bus", "status": "success"})),
        ("000000001.jpg", _jpeg(1)),
        ("000000001.json", _json({"caption": "a dog on grass", "status": "success",
                                  "synthetic_caption": ["a dog", 3, "A brown dog lying on grass."]})),
        ("000000002.txt", b"no image here"),
        ("000000003.png", _jpeg(3)),
        ("000000003.json", b"{broken"),
    ]
    second = [
        ("part/000000004.jpg", _jpeg(4)),
        ("part/000000004.json", _json({"caption": 17})),
        ("part/000000004.url.txt", b"http://x/4"),
    ]
    _write_tar(tmp_path / "00000.tar", first)
    _write_tar(tmp_path / "00001.tar.gz", second, mode="w:gz")
    return tmp_path, first, second


def test_members_are_grouped_into_samples_by_key(shards):
    folder, first, second = shards
    samples = list(iter_webdataset_samples(str(folder / "00000.tar")))
    assert [key for key, _ in samples] == ["000000000", "000000001", "000000002", "000000003"]
    assert sorted(samples[0][1]) == ["jpg", "json", "txt"]
    assert samples[0][1]["jpg"] == first[0][1]
    ((key, members),) = iter_webdataset_samples(str(folder / "00001.tar.gz"))
    assert key == "part/000000004" and sorted(members) == ["jpg", "json", "url.txt"]


def test_tar_shards_become_array_record_shards(shards, tmp_path):
    folder, first, second = shards
    summary = write_webdataset_array_record(
        str(folder / "0000*"), tmp_path / "out", show_progress=False
    )
    assert summary["records_written"] == 3
    assert summary["skipped"] == {"invalid_record": 2}  # No image; broken .json.
    assert summary["caption_entries_dropped"] == 1  # The 3.
    assert [p.rsplit("/", 1)[1] for p in summary["shards"]] == [
        "records-00000-of-00002.array_record", "records-00001-of-00002.array_record"
    ]
    source = ArrayRecordImageTextSource(summary["shards"])
    records = [source[i] for i in range(len(source))]
    by_key = {r["key"]: r for r in records}
    assert list(by_key) == ["000000000", "000000001", "part/000000004"]
    bus = by_key["000000000"]
    assert bus["image"] == first[0][1]
    # Captions are stored as UTF-8 bytes (the pipeline decodes them).
    assert bus["caption"] == b"a red bus"
    assert bus["synthetic_caption"] == b"a red double-decker bus"
    assert by_key["000000001"]["caption"] == b"a dog on grass"
    # A list: the caption at several granularities.
    assert by_key["000000001"]["synthetic_caption"] == [b"a dog", b"A brown dog lying on grass."]
    assert by_key["part/000000004"]["caption"] is None  # 17 is not a caption.
    assert by_key["part/000000004"]["image"] == second[0][1]


def test_the_command_line_reads_tars_and_refuses_what_does_not_apply(shards, tmp_path, capsys):
    folder, _, _ = shards
    out = str(tmp_path / "out")
    assert main([str(folder / "00000.tar"), str(folder / "00001.tar.gz"), out, "--quiet"]) == 0
    assert "Wrote 3 records to 2 shard(s)" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        main([str(folder / "00000.tar"), out, "--num-shards", "4", "--overwrite", "--quiet"])
    assert exit_info.value.code == 2
    assert "--num-shards applies to a JSONL index" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([str(folder / "00000.tar"), out, "--quiet"])
    assert "already exist" in capsys.readouterr().err


def test_a_damaged_tar_is_named(shards, tmp_path):
    folder, _, _ = shards
    data = (folder / "00000.tar").read_bytes()
    (tmp_path / "cut.tar").write_bytes(data[:1500])
    with pytest.raises(ValueError, match="cut.tar.*damaged"):
        list(iter_webdataset_samples(str(tmp_path / "cut.tar")))
    (tmp_path / "text.tar").write_text("not a tar", encoding="utf-8")
    with pytest.raises(ValueError, match="text.tar"):
        list(iter_webdataset_samples(str(tmp_path / "text.tar")))
    with pytest.raises(ValueError, match="names no tar file"):
        write_webdataset_array_record(str(tmp_path / "none*.tar"), tmp_path / "o", show_progress=False)
