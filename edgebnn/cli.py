"""The ``edgebnn`` command line: parse, call the library, print. No logic of its own lives here.

Every subcommand imports its library module inside its body, so that ``edgebnn --help`` does not pay for
importing TensorFlow.
"""

from __future__ import annotations

import json
import sys

import click

import edgebnn
from edgebnn.errors import EdgebnnError


class _Group(click.Group):
    """A click group that turns :class:`EdgebnnError` into one clear line and a non-zero exit."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except EdgebnnError as err:
            click.echo(f"error: {err}", err=True)
            ctx.exit(err.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(130)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(edgebnn.__version__, prog_name="edgebnn")
def main():
    """edgebnn: binary neural networks from paper to ARM board.

    \b
    The flow:
      edgebnn data NAME                      what a data set holds
    """


def _print_json(obj) -> None:
    click.echo(json.dumps(obj, indent=2, sort_keys=False))


# ----------------------------------------------------------------------------------------------- data
@main.command("data")
@click.argument("name")
@click.option("--input-size", type=int, default=None, help="Resize images to this size (default: native).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def data_command(name, input_size, as_json):
    """Print what data set NAME holds: classes, counts, image size.

    NAME is `digits` (embedded), `cifar10`, `folder:PATH` or `tfds:NAME`.
    """
    from edgebnn import data

    summary = data.describe(name, input_size=input_size, progress=not as_json)
    if as_json:
        _print_json(summary)
    else:
        click.echo(data.format_summary(summary))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
