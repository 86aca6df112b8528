"""The exception types for errors a user can cause.

Raise ``EdgebnnError("what is wrong: what to do")`` for bad input (an unknown name, a missing file, an
unreachable board). The command line prints its message as one line and exits non-zero, never with a
traceback. Anything else that escapes is a bug in edgebnn and keeps its traceback.

An error about one parameter's value is an :class:`OptionError`: worded in the library's terms (``check_samples
must be 0 or more``), it carries the parameters it names, so that the command line words it in its flags
(``--check-samples must be 0 or more``).
"""

from __future__ import annotations

import functools
import re
import string


class EdgebnnError(Exception):
    """A user-facing error: its message is one line that names the thing and what to do."""

    exit_code = 2


class _Named:
    """How a message names one parameter: ``{name}`` writes it plainly; ``{name:=VALUE}`` writes it given a value."""

    def __init__(self, text: str, given: str):
        self.text, self.given = text, given

    def __format__(self, spec: str) -> str:
        return self.text + self.given + spec[1:] if spec.startswith("=") else self.text


class OptionError(EdgebnnError):
    """A bad value of a parameter, worded in the library's own terms, that a front end can reword in its own.

    ``template`` is a :meth:`str.format` string whose fields are either ``values`` or the parameters the error is
    about: ``OptionError("{check_samples} must be 0 or more, not {value}", value=-1)`` reads "check_samples must be
    0 or more, not -1"; ``{runner:=PATH}`` reads "runner=PATH". :meth:`worded` writes each parameter the front end's
    way (the command line: ``--check-samples``, ``--runner PATH``). ``option`` is the first parameter named,
    ``options`` all of them.
    """

    def __init__(self, template: str, **values):
        self.template, self.values = template, values
        fields = [f.split(".")[0].split("[")[0] for _, f, _, _ in string.Formatter().parse(template) if f]
        self.options = tuple(dict.fromkeys(f for f in fields if f not in values))
        self.option = self.options[0] if self.options else None
        super().__init__(self.worded())

    def worded(self, names: dict[str, str] | None = None) -> str:
        """The message with each parameter written as ``names`` says, a space before a value (a command line's
        flags); without ``names``, in the library's terms: the parameter's own name, ``=`` before a value."""
        named = {o: _Named(names.get(o, o), " ") if names is not None else _Named(o, "=") for o in self.options}
        return self.template.format(**named, **self.values)

    def __reduce__(self):
        return functools.partial(type(self), **self.values), (self.template,)


def option_error(template: str, **values) -> EdgebnnError:
    """An :class:`OptionError` when ``template`` names a parameter (a field not in ``values``), else a plain
    :class:`EdgebnnError` with the formatted message; for helpers whose ``what`` may or may not name one."""
    error = OptionError(template, **values)
    return error if error.options else EdgebnnError(str(error))


def _escaped(text: str) -> str:
    return text.replace("{", "{{").replace("}", "}}")


def _rekeyed(template: str, values: dict, prefix: str) -> str:
    """``template`` with each field that is one of ``values`` renamed ``prefix + name`` (parameters kept)."""
    out = []
    for literal, field, spec, conversion in string.Formatter().parse(template):
        out.append(_escaped(literal))
        if field is None:
            continue
        root = field.split(".")[0].split("[")[0]
        name = prefix + field if root in values else field
        out.append("{" + name + (f"!{conversion}" if conversion else "")
                   + (":" + _rekeyed(spec, values, prefix) if spec else "") + "}")
    return "".join(out)


def composed(*parts: str | BaseException) -> EdgebnnError:
    """One error whose message is ``parts`` joined (plain text, or errors whose messages are taken in), that keeps
    the parameters every :class:`OptionError` among them names, so that a front end still words them its way."""
    template, values = [], {}
    for i, part in enumerate(parts):
        if isinstance(part, OptionError):
            template.append(_rekeyed(part.template, part.values, f"_{i}_"))
            values.update({f"_{i}_{k}": v for k, v in part.values.items()})
        else:
            template.append(_escaped(str(part)))
    return option_error("".join(template), **values)


# C0 controls but tab (ESC starts a terminal escape, CR rewrites the line, LF starts a fake one, BEL rings), DEL,
# C1 controls (0x9b is a one-byte ESC[) and Unicode's bidirectional overrides (text that reads backwards).
_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\n": "\\n", "\r": "\\r"}


def printable(text) -> str:
    """``str(text)`` safe to write to a terminal as one line: every control character written as its escape
    (ESC as ``\\x1b``, CR as ``\\r``, LF as ``\\n``, U+202E as ``\\u202e``); everything else as it is."""
    return _CONTROL.sub(lambda m: _NAMED.get(m[0]) or (f"\\x{ord(m[0]):02x}" if ord(m[0]) < 0x100
                                                        else f"\\u{ord(m[0]):04x}"), str(text))


def printable_lines(text) -> str:
    """A multi-line text (a table, a report) safe to write to a terminal: each line :func:`printable`, the line
    breaks kept."""
    return "\n".join(printable(line) for line in str(text).split("\n"))
