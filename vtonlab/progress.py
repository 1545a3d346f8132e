"""Progress bars that notebooks save in their final state.

``tqdm.auto`` draws an ipywidgets bar in a notebook; a saved notebook keeps the widget's first text
frame ("0%"). :func:`progress_bar` displays the widget itself and, when the bar closes, replaces the
saved frame with the final one ("100% ... loss=0.05"). Outside a notebook it is plain ``tqdm.auto``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


@contextlib.contextmanager
def progress_bar(**kwargs) -> Iterator:
    """``with progress_bar(total=..., desc=...) as bar: bar.update(1)``; any ``tqdm`` keyword argument."""
    from tqdm.auto import tqdm
    from tqdm.notebook import tqdm as notebook_tqdm

    shown = None
    if not kwargs.get("disable") and issubclass(tqdm, notebook_tqdm):
        from IPython.display import display

        bar = tqdm(display=False, **kwargs)
        shown = display(bar.container, display_id=True)
    else:
        bar = tqdm(**kwargs)
    try:
        yield bar
    finally:
        bar.close()
        if shown is not None:
            shown.update(bar.container)
