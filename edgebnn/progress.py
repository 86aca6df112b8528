"""Progress bars for long steps, one helper so every command shows them the same way."""

from __future__ import annotations

import sys


def progress_bar(iterable=None, *, desc: str = "", total: int | None = None, unit: str = "it",
                 enable: bool = True, leave: bool = False):
    """A tqdm bar on stderr, or the plain iterable when ``enable`` is false."""
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, total=total, unit=unit, disable=not enable, leave=leave,
                file=sys.stderr, dynamic_ncols=True)
