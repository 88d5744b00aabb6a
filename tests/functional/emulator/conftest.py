"""Shared fixtures of the emulator tests: a manual-clock ``EmulatorState`` on the functional conftest's moto S3 (its
``BUCKET`` and function environment), the emulator over HTTP, and boto3 ``bedrock`` / ``bedrock-runtime`` clients
without SDK retries, so each injected error reaches the test.

Why these clients reach the emulator under ``mock_aws`` (moto pass-through): see ``test_emulator``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.client import BaseClient
from botocore.config import Config
from botocore.exceptions import ClientError

from lambdas.shared import aws
from local.emulator import BedrockEmulator, EmulatorState, ManualClock
from tests.functional.conftest import BUCKET

REGION = "us-east-1"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def state(s3: BaseClient, clock: ManualClock) -> EmulatorState:
    return EmulatorState(s3=s3, clock=clock, step_seconds=1)


@pytest.fixture
def emulator(state: EmulatorState, monkeypatch: pytest.MonkeyPatch) -> Iterator[BedrockEmulator]:
    """The emulator on a manual clock; the handlers' ``bedrock`` client reaches it via AWS_ENDPOINT_URL_BEDROCK."""
    with BedrockEmulator(state) as server:
        monkeypatch.setenv("AWS_ENDPOINT_URL_BEDROCK", server.endpoint_url)
        aws.reset()
        yield server
    aws.reset()


def emulator_client(emulator: BedrockEmulator, service: str = "bedrock", **config: Any) -> BaseClient:
    """A ``service`` client of the emulator without SDK retries; ``config`` adds botocore ``Config`` options."""
    return boto3.client(
        service,
        endpoint_url=emulator.endpoint_url,
        region_name=REGION,
        config=Config(retries={"total_max_attempts": 1}, **config),
    )


@pytest.fixture
def bedrock(emulator: BedrockEmulator) -> BaseClient:
    return emulator_client(emulator)


@pytest.fixture
def runtime(emulator: BedrockEmulator) -> BaseClient:
    return emulator_client(emulator, "bedrock-runtime")


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": [{"text": text}]}


def error_code(error: pytest.ExceptionInfo[ClientError]) -> str:
    return str(error.value.response["Error"]["Code"])


CLAUDE = "anthropic.claude-3-haiku-20240307-v1:0"
ROLE = "arn:aws:iam::123456789012:role/BedrockBatch"


def create_job(bedrock: BaseClient, name: str, input_uri: str, model_id: str = CLAUDE, **extra: Any) -> str:
    """Create a batch job of ``input_uri`` whose output goes under ``s3://<BUCKET>/outputs/``; returns its ARN."""
    return bedrock.create_model_invocation_job(
        jobName=name,
        roleArn=ROLE,
        modelId=model_id,
        inputDataConfig={"s3InputDataConfig": {"s3Uri": input_uri, "s3InputFormat": "JSONL"}},
        outputDataConfig={"s3OutputDataConfig": {"s3Uri": f"s3://{BUCKET}/outputs/"}},
        **extra,
    )["jobArn"]
