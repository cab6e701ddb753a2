"""Whether long work draws a progress bar (tqdm): the one rule every training loop here follows."""

from __future__ import annotations

import os


def show_progress(progress: bool | None) -> bool:
    """Whether to draw a progress bar: as asked, else on a terminal outside CI, or when COMPAT_PROGRESS=1."""
    if progress is not None:
        return progress
    return os.environ.get("COMPAT_PROGRESS") == "1" or (os.isatty(2) and not os.environ.get("CI"))
