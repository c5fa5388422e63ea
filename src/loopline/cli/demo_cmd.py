"""``loopline demo``: the end-to-end demo on the embedded default."""

from __future__ import annotations

from pathlib import Path

import typer

from loopline.cli._common import console


def demo(
    home: Path = typer.Option(Path(".loopline-demo"), "--home", help="Folder for the demo store."),
    seed: int = typer.Option(13, "--seed", help="Random seed: the same seed, the same story."),
) -> None:
    """Run the end-to-end demo in its own store folder.

    Example: loopline demo --home /tmp/loopline-demo
    """
    from loopline.loop.demo import run_demo

    run_demo(home, console=console, seed=seed)
