"""Command line: convert a JSONL image-text folder, or webdataset tar shards
as img2dataset writes them, into ArrayRecord shards.

```
python -m keras_tips.data.convert data/index.jsonl data/shards --num-shards 8
python -m keras_tips.data.convert "laion/*.tar" data/shards
```

A source ending in `.jsonl` is a JSONL index (`write_array_record`);
anything else names tar files, folders of them or glob patterns
(`write_webdataset_array_record`: one ArrayRecord shard per tar file).

`add_arguments` and `run_from_args` let another command line (the project's
`keras-tips`) offer the same command.
"""

import argparse
import sys

from keras_tips.data.shards import write_array_record
from keras_tips.data.webdataset import write_webdataset_array_record


def add_arguments(parser):
    """Adds the converter's arguments to an `argparse` parser."""
    parser.add_argument(
        "source",
        nargs="+",
        help=(
            "A JSONL index of an image folder, or webdataset .tar shards "
            "(files, folders of them or glob patterns)."
        ),
    )
    parser.add_argument("output_dir", help="Folder to write the shards into.")
    parser.add_argument(
        "--num-shards",
        type=int,
        default=None,
        help=(
            "Number of shards of a JSONL index (default 1); tar shards "
            "become one shard each."
        ),
    )
    parser.add_argument(
        "--prefix", default="records", help="Shard file name prefix."
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="Replace earlier shards with this prefix.",
    )
    parser.add_argument("--quiet", action="store_true", help="No progress bar.")
    return parser


def run_from_args(args):
    """Runs the conversion for parsed `add_arguments` arguments."""
    jsonl = [path for path in args.source if path.endswith(".jsonl")]
    if jsonl and len(args.source) > 1:
        raise ValueError(
            f"Convert one JSONL index at a time (got {len(args.source)} "
            "sources); several sources are for webdataset tar shards."
        )
    if jsonl:
        summary = write_array_record(
            args.source[0],
            args.output_dir,
            num_shards=1 if args.num_shards is None else args.num_shards,
            prefix=args.prefix,
            overwrite=args.overwrite,
            show_progress=not args.quiet,
        )
    elif args.num_shards is not None:
        raise ValueError(
            "--num-shards applies to a JSONL index; webdataset tar shards "
            "become one ArrayRecord shard each. Leave --num-shards out."
        )
    else:
        summary = write_webdataset_array_record(
            args.source,
            args.output_dir,
            prefix=args.prefix,
            overwrite=args.overwrite,
            show_progress=not args.quiet,
        )
    print(
        f"Wrote {summary['records_written']} records to "
        f"{len(summary['shards'])} shard(s) in {args.output_dir}; "
        f"skipped {summary['records_skipped']} "
        f"{summary['skipped'] or ''}".rstrip()
    )
    if summary["caption_entries_dropped"]:
        print(
            f"Left out {summary['caption_entries_dropped']} synthetic caption "
            "list entries that were not strings."
        )
    return summary


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m keras_tips.data.convert",
        description=(
            "Convert a folder of images with a JSONL index "
            '({"image": ..., "caption": ..., "synthetic_caption": ...}; the '
            "synthetic caption may be a list of captions of different "
            "detail), or webdataset tar shards as img2dataset writes them "
            "(.jpg + .txt / .json per sample), into ArrayRecord shards for "
            "the grain pipeline."
        ),
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        run_from_args(args)
    except (ValueError, OSError) as error:
        parser.exit(2, f"{parser.prog}: error: {error}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
