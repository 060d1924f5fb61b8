"""Progress of long calls in a notebook or a terminal: job events → a tqdm bar and printed notes."""

from __future__ import annotations

import sys
from typing import Any, Callable, Dict, Optional, Union

Event = Dict[str, Any]
Progress = Union[bool, None, Callable[[Event], Any]]


class _Display:
    """Default progress: a `tqdm.auto` bar per extraction phase (a widget in Jupyter) when tqdm is
    importable, else a line every ~10%; notices and epochs as lines on Python's stderr (which a
    notebook shows, unlike the native stderr)."""

    def __init__(self) -> None:
        try:
            from tqdm.auto import tqdm  # type: ignore[import-not-found]

            self._tqdm: Any = tqdm
        except ImportError:
            self._tqdm = None
        self._bar: Any = None
        self._next = 0

    def _say(self, text: str) -> None:
        if self._bar is not None:
            self._bar.write(text, file=sys.stderr)
        else:
            print(text, file=sys.stderr, flush=True)

    def _close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __call__(self, e: Event) -> None:
        kind = e.get("kind")
        if kind == "batch":
            if e["done"] == 0:
                self._close()
                self._next = 0
                if self._tqdm is not None:
                    self._bar = self._tqdm(total=e["total"], unit="img", file=sys.stderr)
            if self._bar is not None:
                self._bar.update(e["images"])
            elif e["done"] >= self._next and e["total"]:
                self._say(f"{e['done']}/{e['total']} images")
                self._next = e["done"] + max(1, e["total"] // 10)
        elif kind == "finished":
            self._close()
        elif kind == "scanned":
            self._say(f"{e['images']} images in {e['root']} ({e['layout']} layout)")
        elif kind == "planned":
            self._say(
                f"{e['images']} to extract, {e['reused']} cached and unchanged, "
                f"{e['removed']} stale rows dropped"
            )
        elif kind == "epoch":
            m = e["metrics"]
            self._say(
                f"epoch {m['epoch']}: train loss {m['train_loss']:.4f} acc {m['train_acc']:.4f}, "
                f"val loss {m['val_loss']:.4f} acc {m['val_acc']:.4f}"
            )
        elif kind == "notice":
            self._say(e["text"])

    def __del__(self) -> None:
        self._close()


def callback(progress: Progress) -> Optional[Callable[[Event], Any]]:
    """The events callable for `progress`: True = the default display, False/None = none, a
    callable = itself (called with one dict per event, e.g. {"kind": "batch", "done": 32, ...})."""
    if progress is True:
        return _Display()
    if not progress:
        return None
    if callable(progress):
        return progress
    raise TypeError(f"progress must be True, False or a callable, got {progress!r}")
