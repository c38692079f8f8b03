"""dvclive without touching a DVC or git repository.

``dvclive.Live()`` looks for the DVC repository around the working directory; in a git
repository without one it runs ``dvc init`` there (and stages the new files), and in a git
repository without commits it then fails ("Empty git repo"). The harness uses dvclive for
curves only (no experiments, no dvc.yaml edits, no artifacts), which needs no repository, so
every Live it opens (its own, and mmengine's DVCLiveVisBackend in detection) is opened inside
``offline_live()``: dvclive then behaves as outside any repository and writes the same files.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from unittest import mock


@contextmanager
def offline_live() -> Iterator[None]:
    """Within this block, a new ``dvclive.Live`` finds no repository (dvclive 3.49's
    ``dvclive.live.get_dvc_repo``; patched by name, so a dvclive that renames it fails loudly
    here instead of silently initialising repositories again)."""
    with mock.patch("dvclive.live.get_dvc_repo", return_value=None):
        yield
