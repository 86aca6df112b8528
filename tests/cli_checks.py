"""The check every refusal of the command line gets: exit 2 and one ``error:`` line, no traceback."""


def assert_one_error_line(result, *needles: str, only: bool = False) -> str:
    """Assert ``result`` ended in one clear error and return its line.

    ``result`` is a click ``CliRunner`` result (``.exit_code``, ``.output``: stdout and stderr as a terminal shows
    them) or a ``subprocess.CompletedProcess`` run with ``text=True`` (``.returncode``, the error on ``.stderr``).
    Asserted: exit code 2; exactly one line starting with ``error:``, and it is the last non-blank line and starts
    with ``error: ``; no ``Traceback`` anywhere in the output; every needle in that line. ``only=True``: the error
    line is all there is (``.output``, or the process's ``.stderr``, is that line and its newline; errors found
    before TensorFlow loads have no C++ log lines before them).
    """
    __tracebackhide__ = True
    if hasattr(result, "returncode"):  # a CompletedProcess
        code, text, everything = result.returncode, result.stderr, result.stderr + (result.stdout or "")
    else:  # a click Result
        code, text = result.exit_code, result.output
        everything = text
    shown = text[-2000:]
    assert code == 2, (code, shown)
    lines = [ln for ln in text.splitlines() if ln.strip()]
    assert lines and lines[-1].startswith("error: "), shown
    assert sum(ln.startswith("error:") for ln in lines) == 1, shown
    assert "Traceback" not in everything, everything[-2000:]
    line = lines[-1]
    if only:
        assert text == line + "\n", shown
    for needle in needles:
        assert needle in line, line
    return line
