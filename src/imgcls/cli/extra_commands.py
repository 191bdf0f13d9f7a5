"""Registration of the commands that live in their own modules (serve, train, video, bench)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    from imgcls.cli.serve import serve; app.command("serve")(serve)  # noqa: E702
    from imgcls.cli.video import video; app.command("video")(video)  # noqa: E702
    from imgcls.cli.bench import bench; app.command("bench")(bench)  # noqa: E702
    from imgcls.cli.train import train; app.command("train")(train)  # noqa: E702
