"""Shared fixtures: fake AWS credentials, a Lambda context, event loading and a clean metrics state per test."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

# Before anything imports boto3: never reach a real account, never send traces.
os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SECURITY_TOKEN": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_METRICS_NAMESPACE": "BedrockBatchTests",
        "POWERTOOLS_SERVICE_NAME": "tests",
        "POWERTOOLS_DEV": "false",
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
        "CDK_DISABLE_VERSION_CHECK": "1",
    }
)
os.environ.pop("AWS_PROFILE", None)

EVENTS = Path(__file__).parent / "events"
DATA = Path(__file__).parent / "data"


@dataclass
class FakeLambdaContext:
    function_name: str = "test-function"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:test-function"
    aws_request_id: str = "00000000-0000-0000-0000-000000000000"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 60_000


@pytest.fixture
def lambda_context() -> FakeLambdaContext:
    return FakeLambdaContext()


def load_event(name: str) -> dict[str, Any]:
    return json.loads((EVENTS / name).read_text())


def pytest_configure(config: pytest.Config) -> None:
    # Under xdist's --dist loadfile, keep the file order of pytest_collection_modifyitems below: xdist's default
    # reorder (files with the most tests first) would leave the few-test, minute-long end-to-end files to the end,
    # two of them on one worker while the other idles.
    if hasattr(config.option, "loadscopereorder"):
        config.option.loadscopereorder = False


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On xdist workers, the files with a slow test first (the end-to-end runs, up to a minute a file), so the two
    workers start on the long files and finish together on the quick ones; the files keep their order within each
    group, and a file's tests theirs. A single-process run keeps pytest's order."""
    if not hasattr(config, "workerinput"):
        return

    def file_of(item: pytest.Item) -> str:
        return item.nodeid.split("::")[0]

    slow_files = {file_of(item) for item in items if item.get_closest_marker("slow") is not None}
    items.sort(key=lambda item: file_of(item) not in slow_files)  # stable: False (slow) first


@pytest.fixture(scope="session", autouse=True)
def _synth_cache(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One CDK synth per context for the whole run: every local runtime (in this process or a CLI child it starts)
    reads its template from a directory of this run (``local.runner.SYNTH_CACHE_VARIABLE``); under xdist the workers
    share it. The synth itself is tested afresh in ``tests/infra/test_local_synth.py``."""
    from local.runner import SYNTH_CACHE_VARIABLE

    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    os.environ[SYNTH_CACHE_VARIABLE] = str(shared / "synth-cache")
    yield
    os.environ.pop(SYNTH_CACHE_VARIABLE, None)


@pytest.fixture(autouse=True)
def _reset_metrics() -> Any:
    from lambdas.shared.observability import metrics

    yield
    metrics.clear_metrics()


@pytest.fixture(scope="module")
def batch_gateway() -> Any:
    """A gateway whose Batch API runs on a local runtime (``tests/openai_batch.py``): ``.url`` (the SDK's base URL is
    ``url + "/v1"``), ``.key`` and ``.client()`` (the openai SDK on it). One per module: the runtime synthesizes the
    batch state machine at start."""
    from tests.openai_batch import batch_gateway as start

    with start() as gateway:
        yield gateway
