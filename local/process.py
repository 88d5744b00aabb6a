"""Process-level helpers shared by the local runtime and the CLI's servers."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager


@contextmanager
def temporary_environment(values: Mapping[str, str]) -> Iterator[None]:
    """Set environment variables for the duration of the block, then restore the previous values."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def wait_until_interrupted() -> None:
    """Block a foreground server command until Ctrl-C."""
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        print("stopped")
