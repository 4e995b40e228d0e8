"""`gridhub simulate cameras`: render synthetic street and construction-site scenes with ground truth."""

from __future__ import annotations

import click

from gridhub.cli import _not_built


@click.command("cameras")
def simulate_cameras() -> None:
    """Render synthetic street and construction-site scenes with ground truth."""
    _not_built("gridhub simulate cameras", 5)
