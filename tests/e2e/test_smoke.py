"""``python -m cli smoke --target local``: the smoke test of a deployment, run against the local runtime (moto + the
emulator) and the local gateway. Every step passes; a failing step makes the command exit non-zero naming the step
and its fix."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

from cli.__main__ import main
from cli.gateway import poe_query, post_stream
from local.emulator.errors import ApiError
from local.emulator.jobs import EmulatorState
from local.emulator.runtime import RuntimeState

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
STEPS = ("poe request", "openai request", "batch run", "cleanup")


@pytest.fixture
def restored_environment() -> Iterator[None]:
    """The command sets variables in this process's environment (the local gateway's key, quieter logs): undo them."""
    before = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(before)


def test_smoke_local_passes_every_step():
    # GIVEN the project as checked out (cdk.json, prices.json, the bot file)
    # WHEN `python -m cli smoke --target local` runs as a user would run it
    done = subprocess.run(
        [sys.executable, "-m", "cli", "smoke", "--target", "local", "--quiet"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    # THEN it exits 0 and prints every step as passed, on the computed cheapest model and bot
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    for step in STEPS:
        assert any(line.startswith(f"PASS  {step}: ") for line in lines), done.stdout
    assert not any(line.startswith("FAIL") for line in lines)
    assert "batch model amazon.nova-lite-v1:0: the cheapest text model of allowedModelIds" in done.stdout
    assert "gateway bot nova-micro: the cheapest priced text bot" in done.stdout
    assert "100 of 100 rows answered by amazon.nova-lite-v1:0" in done.stdout
    assert lines[-1] == "smoke: all 4 steps passed"
    assert "Traceback" not in done.stderr


def test_smoke_with_a_wrong_gateway_key_fails_the_gateway_steps(capsys, restored_environment):
    # GIVEN the local gateway, and a key that is not its key
    # WHEN the smoke test sends that key
    code = main(["smoke", "--target", "local", "--quiet", "--access-key", "not-the-key"])
    # THEN both gateway steps fail with the status and the fix, the batch steps still run, and it exits 2 (setup)
    out, err = capsys.readouterr()
    assert code == 2
    for step in ("poe request", "openai request"):
        assert f"FAIL  {step}: the gateway refused the key (HTTP 401); fix: send the key the gateway was started" in out
    assert "PASS  batch run: " in out and "PASS  cleanup: " in out
    assert err.strip() == "smoke: 2 of 4 steps failed: poe request, openai request"


def test_smoke_whose_batch_rows_fail_names_the_step_and_the_fix(capsys, restored_environment):
    # GIVEN an emulator that answers every batch record with an error
    # WHEN the smoke test runs
    code = main(["smoke", "--target", "local", "--quiet", "--faults", "record_error_rate=1"])
    # THEN the batch step fails naming how many rows were answered, the first error and where to look; the run's
    # data is still removed; the command exits 1 naming the failed step
    out, err = capsys.readouterr()
    assert code == 1
    batch_line = next(line for line in out.splitlines() if "batch run:" in line and "started" not in line)
    assert batch_line.startswith("FAIL  batch run: 0 of 100 rows answered, 100 rows written (first error: ")
    assert "; fix: see summary.json of run " in batch_line
    assert "PASS  poe request" in out and "PASS  cleanup: deleted " in out
    assert err.strip() == "smoke: 1 of 4 steps failed: batch run"


def test_smoke_without_model_access_names_the_models_and_the_fix(monkeypatch, capsys, restored_environment):
    # GIVEN Bedrock (the emulator) refusing every model, in batch and at run time, as without model access
    def refuse(*_args: Any, **_kwargs: Any) -> Any:
        raise ApiError("AccessDeniedException", "You don't have access to the model with the specified model ID.")

    monkeypatch.setattr(RuntimeState, "_answer", refuse)
    monkeypatch.setattr(EmulatorState, "create_model_invocation_job", refuse)
    # WHEN the smoke test runs
    code = main(["smoke", "--target", "local", "--quiet"])
    # THEN the gateway steps and the batch step fail naming the model, its region and where to enable access; the
    # run's data is still removed; the command exits 2 (setup)
    out, err = capsys.readouterr()
    assert code == 2
    gateway_fix = "fix: no access to model us.amazon.nova-micro-v1:0 in region us-east-1: enable it in the Amazon"
    batch_fix = "fix: no access to model amazon.nova-lite-v1:0 in region us-east-1: enable it in the Amazon"
    lines = out.splitlines()
    for step, fix in (("poe request", gateway_fix), ("openai request", gateway_fix), ("batch run", batch_fix)):
        line = next(line for line in lines if line.startswith(f"FAIL  {step}: "))
        assert fix in line, line
    assert any(line.startswith("PASS  cleanup: ") for line in lines)
    assert err.strip() == "smoke: 3 of 4 steps failed: poe request, openai request, batch run"


class _RecordingSse(BaseHTTPRequestHandler):
    """Records each request's path and authorization, and answers two server-sent events."""

    seen: ClassVar[list[tuple[str, str]]] = []

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.seen.append((self.path, self.headers.get("Authorization", "")))
        body = b'event: text\ndata: {"text": "hi"}\n\nevent: done\ndata: {}\n\n'
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's signature
        return None


def test_gateway_requests_keep_the_api_stage_of_the_url():
    # GIVEN a deployed gateway's ApiUrl, which ends in its API Gateway stage ("/prod/")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _RecordingSse)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        api_url = f"http://127.0.0.1:{server.server_address[1]}/prod/"
        # WHEN the smoke test streams a Poe query from it
        events = list(post_stream(api_url, "/poe/nova-micro", poe_query("hello"), "the-key"))
    finally:
        server.shutdown()
        server.server_close()
    # THEN the request went to the stage's route with the key, and every event came back in order
    assert _RecordingSse.seen == [("/prod/poe/nova-micro", "Bearer the-key")]
    assert events == [("text", '{"text": "hi"}'), ("done", "{}")]
