from __future__ import annotations

import io
import os
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

BUCKET = "test-data-bucket"


@pytest.fixture(scope="session", autouse=True)
def service_quotas_endpoint() -> Iterator[str]:
    """Service Quotas as preprocess reads it (moto has no ListServiceQuotas): an emulator with its default quotas,
    for the whole session. The ``emulator`` fixture points the variable at its own state while it runs."""
    from local.emulator.jobs import EmulatorState
    from local.emulator.server import BedrockEmulator

    with BedrockEmulator(EmulatorState(s3=None)) as server:
        saved = os.environ.get("AWS_ENDPOINT_URL_SERVICE_QUOTAS")
        os.environ["AWS_ENDPOINT_URL_SERVICE_QUOTAS"] = server.endpoint_url
        yield server.endpoint_url
        if saved is None:
            os.environ.pop("AWS_ENDPOINT_URL_SERVICE_QUOTAS", None)
        else:
            os.environ["AWS_ENDPOINT_URL_SERVICE_QUOTAS"] = saved


@pytest.fixture
def s3() -> Iterator[Any]:
    """A moto S3 with the deployment's data bucket, and the function environment the stack would set."""
    from lambdas.shared import aws

    env = {
        "DATA_BUCKET": BUCKET,
        "BEDROCK_ROLE_ARN": "arn:aws:iam::123456789012:role/bedrock-batch",
        "JOB_TIMEOUT_HOURS": "72",
        "MAX_RECORDS_PER_JOB": "50000",
        "ALLOWED_MODEL_IDS": "",
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    with mock_aws():
        aws.reset()
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield client
    aws.reset()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture
def emulator(s3: Any) -> Iterator[Any]:
    """The Bedrock emulator over HTTP; the handlers' ``bedrock`` client reaches it via AWS_ENDPOINT_URL_BEDROCK."""
    from lambdas.shared import aws
    from local.emulator.jobs import EmulatorState
    from local.emulator.server import BedrockEmulator

    with BedrockEmulator(EmulatorState(s3=s3, step_seconds=0)) as server:
        quotas_endpoint = os.environ.get("AWS_ENDPOINT_URL_SERVICE_QUOTAS", "")
        os.environ["AWS_ENDPOINT_URL_BEDROCK"] = server.endpoint_url
        os.environ["AWS_ENDPOINT_URL_BEDROCK_RUNTIME"] = server.endpoint_url  # Run on demand's InvokeModel, Converse
        os.environ["AWS_ENDPOINT_URL_SERVICE_QUOTAS"] = server.endpoint_url  # this state's per-model quotas
        aws.reset()
        yield server
        os.environ.pop("AWS_ENDPOINT_URL_BEDROCK", None)
        os.environ.pop("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", None)
        os.environ["AWS_ENDPOINT_URL_SERVICE_QUOTAS"] = quotas_endpoint
        aws.reset()


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    """What the shared Powertools logger writes, one JSON object a line (its handler's stream is bound when the logger
    is created, so capsys does not see it)."""
    import logging

    from lambdas.shared.observability import logger

    handler = logger.registered_handler
    assert isinstance(handler, logging.StreamHandler)
    buffer = io.StringIO()
    previous = handler.setStream(buffer)
    yield buffer
    handler.setStream(previous)
