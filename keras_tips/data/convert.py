"""Command line: convert a JSONL image-text folder into ArrayRecord shards.

```
python -m keras_tips.data.convert data/index.jsonl data/shards --num-shards 8
```

`add_arguments` and `run_from_args` let another command line (the project's
`keras-tips`) offer the same command.
"""

import argparse
import sys

from keras_tips.data.shards import write_array_record


def add_arguments(parser):
    """Adds the converter's arguments to an `argparse` parser."""
    parser.add_argument("jsonl_path", help="JSONL index of the image folder.")
    parser.add_argument("output_dir", help="Folder to write the shards into.")
    parser.add_argument(
        "--num-shards",
        type=int,
        default=1,
        help="Number of shards (default 1).",
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
    summary = write_array_record(
        args.jsonl_path,
        args.output_dir,
        num_shards=args.num_shards,
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
            "detail) into ArrayRecord shards for the grain pipeline."
        ),
    )
    add_arguments(parser)
    run_from_args(parser.parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
