"""Process-level helpers shared by the local runtime and the CLI's servers."""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable, Iterator, Mapping, MutableMapping
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


class PerThreadEnviron(MutableMapping[str, str]):
    """A stand-in for ``os.environ`` that gives each thread running a Lambda handler an environment of its own.

    In Lambda every function has its own process and sees only the variables of its own definition (plus what Lambda
    sets). Locally the handlers of all functions run in one process, several at a time (moto runs each state of each
    Map iteration in a thread of its own), so one ``os.environ`` cannot hold each function's variables. While
    ``installed()``, ``os.environ`` (and ``os.getenv``, which reads it) is this object: a thread inside ``bound(env)``
    reads and writes ``env`` only; every other thread (moto, the emulator, the test itself) the process environment.
    A thread that a handler starts is not bound: it sees the process environment, which holds no function's
    variables, so a handler must read its configuration in its own thread (as ``lambdas.shared.settings`` says).
    Child processes and C code (``getenv(3)``) see the process environment too.
    """

    def __init__(self, process: MutableMapping[str, str]) -> None:
        self.process = process
        self._local = threading.local()

    def _current(self) -> MutableMapping[str, str]:
        bound: MutableMapping[str, str] | None = getattr(self._local, "environment", None)
        return self.process if bound is None else bound

    def __getitem__(self, name: str) -> str:
        try:
            return self._current()[name]
        except KeyError:
            on_miss: Callable[[str, str], None] | None = getattr(self._local, "on_miss", None)
            if on_miss is not None:
                on_miss(name, _reader())
            raise

    def __setitem__(self, name: str, value: str) -> None:
        self._current()[name] = value

    def __delitem__(self, name: str) -> None:
        del self._current()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._current()))

    def __len__(self) -> int:
        return len(self._current())

    def copy(self) -> dict[str, str]:
        return dict(self._current())

    @contextmanager
    def bound(
        self, environment: Mapping[str, str], on_miss: Callable[[str, str], None] | None = None
    ) -> Iterator[None]:
        """Run the block (in this thread) with ``environment`` as the whole environment (a copy of it).
        ``on_miss(name, reader)`` hears of every variable read there that is not set (``os.environ.get`` with a
        default included), with the module that read it."""
        previous = getattr(self._local, "environment", None), getattr(self._local, "on_miss", None)
        self._local.environment, self._local.on_miss = dict(environment), on_miss
        try:
            yield
        finally:
            self._local.environment, self._local.on_miss = previous

    @contextmanager
    def installed(self) -> Iterator[PerThreadEnviron]:
        """Make this object ``os.environ`` for the block."""
        original = os.environ
        os.environ = self  # type: ignore[assignment]  # noqa: B003 - a view over it: the process environment stays
        try:
            yield self
        finally:
            os.environ = original  # noqa: B003


def _reader() -> str:
    """The module of the code that read the environment: the first caller outside this module and the mapping
    machinery (``os.getenv``, ``Mapping.get``)."""
    frame = sys._getframe(1)
    while frame is not None and frame.f_globals.get("__name__") in (
        __name__,
        "os",
        "collections.abc",
        "_collections_abc",
    ):
        frame = frame.f_back  # type: ignore[assignment]
    return str(frame.f_globals.get("__name__", "?")) if frame is not None else "?"


def wait_until_interrupted() -> None:
    """Block a foreground server command until Ctrl-C."""
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        print("stopped")
