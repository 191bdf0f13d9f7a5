"""Registration of the commands that live in their own modules (serve, train, video, bench)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    pass
