"""Progress bars for long CLI work (tqdm, quiet when not on a terminal)."""

import sys


def progress(iterable, description, total=None):
    """Wraps `iterable` in a tqdm bar on a terminal; returns it unchanged
    otherwise, so logs of batch jobs stay readable."""
    if not sys.stderr.isatty():
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, desc=description, total=total)
