"""The ``imgcls`` command line: a thin Typer shell over the engine, server and tools.

Exit codes (one mapping, here): 0 success; 1 some inputs failed (the rest were classified);
2 bad usage or input (nothing could be done); 3 model problem (weights, artifacts, verification);
130 interrupted.
"""

from __future__ import annotations

import sys

import typer

from imgcls.cli import models as models_cmd
from imgcls.cli import predict as predict_cmd
from rich.markup import escape

from imgcls.cli._common import console_err
from imgcls.errors import ImgclsError

__all__ = ["app", "main"]

app = typer.Typer(
    name="imgcls",
    help="Offline ImageNet image classification: predict, serve, evaluate, fine-tune.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.command("predict")(predict_cmd.predict)
app.command("eval")(predict_cmd.evaluate)
app.add_typer(models_cmd.app, name="models")


def _register_optional() -> None:
    """Commands whose modules are written separately; each registers itself here."""
    from imgcls.cli import extra_commands

    extra_commands.register(app)


_register_optional()


def main() -> None:
    try:
        app()
    except ImgclsError as exc:
        console_err.print(f"[bold red]Error:[/] {escape(exc.message)}")
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        console_err.print("[yellow]Interrupted.[/]")
        sys.exit(130)
