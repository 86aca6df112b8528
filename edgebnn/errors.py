"""The one exception type for errors a user can cause.

Raise ``EdgebnnError("what is wrong: what to do")`` for bad input (an unknown name, a missing file, an
unreachable board). The command line prints its message as one line and exits non-zero, never with a
traceback. Anything else that escapes is a bug in edgebnn and keeps its traceback.
"""


class EdgebnnError(Exception):
    """A user-facing error: its message is one line that names the thing and what to do."""

    exit_code = 2
