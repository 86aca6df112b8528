"""Progress bars for long steps, one helper so every command shows them the same way.

On a terminal: a tqdm bar on stderr. When stderr is a file or a pipe (a log, CI), a bar's carriage returns would
fill it with thousands of redrawn lines, so :class:`LineProgress` writes plain lines instead: one at each quarter
of a long bar (one running over 10 s) and one when it ends.
"""

from __future__ import annotations

import sys
import time

from tqdm.auto import tqdm

QUARTERS_AFTER_S = 10.0  # a bar shorter than this prints only its final line


class LineProgress:
    """A progress bar for log files: whole lines, no carriage returns; the tqdm methods edgebnn uses."""

    def __init__(self, iterable=None, *, desc: str = "", total: int | None = None, unit: str = "it", file=None):
        self.iterable, self.desc, self.unit, self.file = iterable, desc, unit, file or sys.stderr
        if total is None and iterable is not None:
            try:
                total = len(iterable)
            except TypeError:  # no length (a generator, a tf.data pipeline of unknown size)
                total = None
        self.total, self.n, self.postfix, self.closed = total, 0, "", False
        self.started = time.monotonic()
        self.next_quarter = 1

    def __iter__(self):
        for item in self.iterable:
            yield item
            self.update(1)
        self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def set_postfix(self, **values) -> None:
        self.postfix = ", ".join(f"{k}={v}" for k, v in values.items())

    def set_description(self, desc: str) -> None:
        self.desc = desc

    def update(self, n: int = 1) -> None:
        self.n += n
        if not self.total or self.next_quarter > 3 or time.monotonic() - self.started < QUARTERS_AFTER_S:
            return
        if self.n * 4 >= self.next_quarter * self.total and self.n < self.total:
            self._line()
            self.next_quarter = self.n * 4 // self.total + 1

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.n:
            self._line()

    def _line(self) -> None:
        seconds = time.monotonic() - self.started
        done = f"{self.n}/{self.total}" if self.total else f"{self.n}"
        pct = f" ({100 * self.n / self.total:.0f}%)" if self.total else ""
        rate = f", {self.n / seconds:.1f} {self.unit}/s" if seconds > 0 else ""
        self.file.write(f"{self.desc + ': ' if self.desc else ''}{done} {self.unit}{pct} in {seconds:.1f} s{rate}"
                        + (f", {self.postfix}" if self.postfix else "") + "\n")
        self.file.flush()


def _is_terminal(file) -> bool:
    try:
        return bool(file.isatty())
    except (AttributeError, ValueError):
        return False


def progress_bar(iterable=None, *, desc: str = "", total: int | None = None, unit: str = "it",
                 enable: bool = True, leave: bool = False, file=None):
    """A tqdm bar on stderr when it is a terminal, :class:`LineProgress` when it is not, or the plain iterable's
    stand-in (tqdm disabled) when ``enable`` is false."""

    file = file or sys.stderr
    if enable and not _is_terminal(file):
        return LineProgress(iterable, desc=desc, total=total, unit=unit, file=file)
    return tqdm(iterable, desc=desc, total=total, unit=unit, disable=not enable, leave=leave, file=file,
                dynamic_ncols=True)
