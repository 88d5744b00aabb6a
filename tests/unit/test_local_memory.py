"""The local runtime's memory bounds that need no AWS: data-plane handler slots, and moto patches that match moto."""

from __future__ import annotations

import json
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from cli.__main__ import main
from lambdas.shared import allocator
from local import memory, moto_patches
from local.memory import BYTES_PER_SLOT, DEFAULT_DATA_PLANE_SLOTS, HandlerSlots, default_data_plane_slots
from local.process import PerThreadEnviron
from local.runner import InProcessLambdas, LocalFunction

_go = threading.Event()
_lock = threading.Lock()
_running = {"now": 0, "most": 0, "entered": 0}


def held_handler(event: dict[str, Any], context: Any) -> str:
    """A handler that stays inside its invocation until the test lets every handler go."""
    with _lock:
        _running["now"] += 1
        _running["entered"] += 1
        _running["most"] = max(_running["most"], _running["now"])
    _go.wait(60)  # a bound against a hang; the test sets it
    with _lock:
        _running["now"] -= 1
    return str(event["n"])


HERE = __name__
POSTPROCESS = LocalFunction("Postprocess", "Postprocess", f"{HERE}.held_handler", {}, 3008, data_plane=True)
FINALIZE = LocalFunction("Finalize", "Finalize", f"{HERE}.held_handler", {}, 3008, data_plane=True)
POLL = LocalFunction("Poll", "Poll", f"{HERE}.held_handler", {}, 256)


def _wait_for(condition: Any) -> None:
    """Wait until ``condition()`` holds (bounded against a hang: the failure is the condition never holding)."""
    for _ in range(3000):
        if condition():
            return
        threading.Event().wait(0.01)
    raise AssertionError("the condition never held")


def test_at_most_the_slots_run_data_plane_handlers_at_once_and_the_others_wait() -> None:
    # GIVEN the in-process dispatch with 2 data-plane slots, and 4 data-plane invocations at once
    slots = HandlerSlots(2)
    lambdas = InProcessLambdas([POSTPROCESS, FINALIZE, POLL], PerThreadEnviron({}), slots)
    _go.clear()
    _running.update(now=0, most=0, entered=0)
    names = ["Postprocess", "Finalize", "Postprocess", "Finalize"]
    with ThreadPoolExecutor(5) as pool:  # a thread each, as moto gives each Map iteration
        futures = [pool.submit(lambdas.invoke, name, json.dumps({"n": n}), {}) for n, name in enumerate(names)]
        # WHEN two of them are inside their handlers and two wait for a slot
        _wait_for(lambda: _running["entered"] == 2 and slots.waiting == 2)
        # THEN those two hold the slots, and the other two have not entered their handlers
        assert slots.active == 2 and _running["now"] == 2
        # AND a control-plane function is not held back by the busy slots
        poll = pool.submit(lambdas.invoke, "Poll", json.dumps({"n": 9}), {})
        _wait_for(lambda: _running["entered"] == 3)
        _go.set()
        results = [json.loads(f.result(timeout=60)) for f in futures]
        assert json.loads(poll.result(timeout=60)) == "9"
    # AND every invocation ran, never more than 2 data-plane handlers (+ the poll) at once
    assert results == ["0", "1", "2", "3"]
    assert _running["most"] <= 3 and slots.active == 0 and slots.waiting == 0


def test_slots_are_sized_from_free_memory_and_never_zero() -> None:
    # GIVEN machines with plenty, little and unknown free memory
    # WHEN the default number of slots is computed
    # THEN it is the default when memory allows, fewer on a small machine, and at least one
    assert default_data_plane_slots(64 * BYTES_PER_SLOT) == DEFAULT_DATA_PLANE_SLOTS
    assert default_data_plane_slots(BYTES_PER_SLOT) == 1
    assert default_data_plane_slots(BYTES_PER_SLOT // 4) == 1
    assert default_data_plane_slots(None) == DEFAULT_DATA_PLANE_SLOTS
    with pytest.raises(ValueError, match="slots must be >= 1, got 0"):
        HandlerSlots(0)


def test_the_patched_moto_functions_have_the_signatures_the_patches_were_written_for() -> None:
    # GIVEN the moto installed (pinned in requirements-dev.txt)
    # WHEN the signatures of the functions local/moto_patches.py replaces are read
    # THEN they are those the patches were written against (an upgrade that changes one fails here)
    assert moto_patches.current_signatures() == moto_patches.PATCHED


def test_installing_the_patches_refuses_a_moto_with_other_signatures(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN a moto whose get_object would have another signature than the patch expects
    monkeypatch.setitem(moto_patches.PATCHED, "S3Response.get_object", "(self, version_id)")
    # WHEN the patches are installed
    # THEN they refuse, naming the function and the fix
    expected = r"S3Response\.get_object changed signature.*requirements-dev\.txt"
    with pytest.raises(RuntimeError, match=expected), moto_patches.installed():
        pass


def test_installed_patches_are_removed_after_the_block() -> None:
    # GIVEN moto's own functions
    from moto.s3.responses import S3Response

    original = S3Response.get_object
    # WHEN the patches are installed, then the block ends
    with moto_patches.installed():
        patched = S3Response.get_object
    # THEN the block ran with a replacement, and moto's own function is back after it
    assert patched is not original and S3Response.get_object is original


@pytest.mark.parametrize(
    ("target", "value", "message"),
    [
        ("local", "0", "--local-handlers must be >= 1, got 0"),
        ("aws", "2", "--local-handlers bounds the local process: it only works with --target local"),
    ],
)
def test_the_cli_refuses_local_handlers_it_cannot_use(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], target: str, value: str, message: str
) -> None:
    # GIVEN an input file
    path = tmp_path / "topics.csv"
    path.write_text("topic\ncats\n")
    # WHEN the batch command gets --local-handlers 0, or --local-handlers with the AWS target
    code = main(
        ["batch", "--target", target, "--input", str(path), "--model-id", "m", "--local-handlers", value]
        + ["--output", str(tmp_path / "out")]
    )
    # THEN it exits 2 with one line naming the flag, the value and what to do, before anything starts
    assert code == 2
    assert capsys.readouterr().err.strip() == f"error: {message}"


def test_releasing_freed_memory_starts_no_process(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN a process in which starting a child process is recorded (and fails)
    started: list[Any] = []

    def no_child(*args: Any, **kwargs: Any) -> Any:
        started.append(args)
        raise OSError("no child processes here")

    monkeypatch.setattr(subprocess, "Popen", no_child)
    allocator.glibc.cache_clear()
    # WHEN glibc is told to limit its arenas, to fix its mmap threshold and to trim after a data-plane handler
    limited = memory.limit_malloc_arenas()
    fixed = memory.fix_mmap_threshold()
    allocator.release_free_memory()
    # THEN glibc was found and used without a child process (a fork shows as a spike of this process's size)
    assert started == []
    assert limited is fixed is (allocator.glibc() is not None)
