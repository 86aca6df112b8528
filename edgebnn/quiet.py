"""TensorFlow's, absl's and Python's start-up chatter kept off the terminal; ``--verbose`` lets it through.

TensorFlow and the TFLite converter write from C++ straight to file descriptor 2 (absl's "All log messages before
absl::InitializeLog()", "Ignored output_format", "Created TensorFlow Lite XNNPACK delegate"), which no Python
setting reaches. So :func:`keep_off_terminal` points descriptor 2 at ``os.devnull`` and gives Python's
``sys.stderr`` (edgebnn's progress bars, warnings and ``error:`` lines) a copy of the real one. It also sets the
``tensorflow`` and ``absl`` loggers to ERROR, TF_CPP_MIN_LOG_LEVEL to 3 and ignores Python warnings.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings

_state: dict = {}


def _real_stderr_fd() -> int | None:
    """2 when ``sys.stderr`` writes to descriptor 2 (not under a test runner's capture), else None."""
    try:
        return 2 if sys.stderr.fileno() == 2 else None
    except (AttributeError, OSError, ValueError):
        return None


def keep_off_terminal() -> None:
    """Silence the chatter for the rest of the process (idempotent)."""
    if _state:
        return
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    _state["levels"] = {name: logging.getLogger(name).level for name in ("tensorflow", "absl")}
    for name in _state["levels"]:
        logging.getLogger(name).setLevel(logging.ERROR)
    _state["filters"] = list(warnings.filters)
    warnings.filterwarnings("ignore")
    if _real_stderr_fd() is not None:
        sys.stderr.flush()
        saved = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)
        _state["fd"], _state["stderr"] = saved, sys.stderr
        sys.stderr = os.fdopen(os.dup(saved), "w", buffering=1, encoding=sys.stderr.encoding or "utf-8",
                               errors="backslashreplace")


def let_through() -> None:
    """Undo :func:`keep_off_terminal` (``--verbose``): descriptor 2, loggers and warnings as they were."""
    if not _state:
        return
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"
    for name, level in _state.pop("levels").items():
        logging.getLogger(name).setLevel(level)
    warnings.filters[:] = _state.pop("filters")
    if "fd" in _state:
        sys.stderr.flush()
        os.dup2(_state["fd"], 2)
        os.close(_state.pop("fd"))
        sys.stderr.close()
        sys.stderr = _state.pop("stderr")
    _state.clear()
