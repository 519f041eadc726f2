"""Writes the README's ablation section from `keras-tips ablation`'s output.

The numbers come from the ablation's `ablation.json` alone (every arm and
seed): the table of mean ± std over seeds, the arms that were skipped, and
whether the dense metrics order as in the TIPS paper. The text replaces what
lies between the README's two ablation markers.

Usage:

    python -m keras_tips.training.ablation_table runs/ablation/ablation.json README.md
"""

import argparse
import json

from keras_tips.training.ablation import ablation_markdown
from keras_tips.training.ablation import write_readme_section


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", help="ablation.json written by keras-tips ablation")
    parser.add_argument("readme", help="Markdown file with the ablation markers")
    args = parser.parse_args(argv)
    with open(args.results, encoding="utf-8") as f:
        raw = json.load(f)
    if not isinstance(raw, dict) or not raw.get("runs"):
        raise SystemExit(
            f"{args.results} holds no finished runs (no 'runs' entry with "
            "results): run keras-tips ablation first."
        )
    markdown = ablation_markdown(raw)
    try:
        write_readme_section(args.readme, markdown)
    except ValueError as error:
        raise SystemExit(str(error)) from error
    print(markdown)
    print(f"Wrote the ablation section of {args.readme}.")


if __name__ == "__main__":
    main()
