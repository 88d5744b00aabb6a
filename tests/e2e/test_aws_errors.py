"""``--target aws`` without what it needs: no credentials, no region, expired credentials, no stack, no gateway key, no
model access. Each is one line on stderr naming what is missing and the fix, exit code 2, never a traceback.

Offline: the command runs as a subprocess in an environment without credentials or region; expired credentials are
a local HTTP server answering as STS and CloudFormation do (403 ``ExpiredToken``); missing stacks are moto's
CloudFormation; missing model access is the Bedrock emulator refusing the model as Bedrock does."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from cli.__main__ import main
from local.emulator.errors import ApiError
from local.emulator.jobs import EmulatorState
from local.emulator.runtime import RuntimeState
from local.emulator.server import BedrockEmulator
from local.runner import LocalRuntime, RuntimeOptions
from tests.e2e.local_runs import CLAUDE, deploy_outputs, run_batch

ROOT = Path(__file__).resolve().parents[2]
NO_MODEL_ACCESS = "You don't have access to the model with the specified model ID."


def aws_commands(tmp_path: Path) -> dict[str, list[str]]:
    """The three commands that use AWS, with everything else they need."""
    path = tmp_path / "topics.csv"
    path.write_text("topic\n" + "".join(f"t{i}\n" for i in range(100)))
    batch = ["batch", "--target", "aws", "--input", str(path), "--model-id", CLAUDE, "--output", str(tmp_path / "o")]
    return {
        "batch": [*batch, "--prompt-id", "joke_about_topic", "--quiet"],
        "gateway": ["gateway", "--target", "aws", "--ask", "hello"],
        "smoke": ["smoke", "--target", "aws", "--quiet"],
    }


def bare_environment(tmp_path: Path, **variables: str) -> dict[str, str]:
    """This environment without any AWS setting: no credentials or region from variables, files or instance
    metadata, plus ``variables``."""
    env = {name: value for name, value in os.environ.items() if not name.startswith(("AWS_", "GATEWAY_"))}
    env |= {
        "HOME": str(tmp_path),
        "AWS_CONFIG_FILE": str(tmp_path / "no-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    return env | variables


def run_cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )


def assert_one_line(done: subprocess.CompletedProcess[str], *expected: str) -> None:
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    for text in expected:
        assert text in lines[0], lines[0]


@pytest.mark.parametrize("command", ["batch", "gateway", "smoke"])
def test_no_credentials_is_one_line_with_the_fix(tmp_path: Path, command: str):
    # GIVEN a machine with a region but no AWS credentials anywhere
    env = bare_environment(tmp_path, AWS_DEFAULT_REGION="us-east-1")
    # WHEN the command runs against AWS
    done = run_cli(aws_commands(tmp_path)[command], env)
    # THEN one line says the credentials are missing and how to set them, exit 2
    assert_one_line(done, "error: no AWS credentials found", "aws configure", "AWS_PROFILE")


@pytest.mark.parametrize("command", ["batch", "gateway", "smoke"])
def test_no_region_is_one_line_with_the_fix(tmp_path: Path, command: str):
    # GIVEN credentials but no region anywhere
    env = bare_environment(tmp_path, AWS_ACCESS_KEY_ID="AKIDEXAMPLE", AWS_SECRET_ACCESS_KEY="secret")
    # WHEN the command runs against AWS
    done = run_cli(aws_commands(tmp_path)[command], env)
    # THEN one line says the region is missing and how to set it, exit 2
    assert_one_line(done, "error: no AWS region set", "AWS_DEFAULT_REGION")


class _ExpiredToken(BaseHTTPRequestHandler):
    """Answers every call as STS and CloudFormation answer expired temporary credentials (query protocol)."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = (
            b"<ErrorResponse><Error><Type>Sender</Type><Code>ExpiredToken</Code>"
            b"<Message>The security token included in the request is expired</Message></Error>"
            b"<RequestId>00000000-0000-0000-0000-000000000000</RequestId></ErrorResponse>"
        )
        self.send_response(403)
        self.send_header("Content-Type", "text/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's signature
        return None


@pytest.fixture
def expired_token_endpoint() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ExpiredToken)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("command", ["batch", "gateway", "smoke"])
def test_expired_credentials_are_one_line_with_the_fix(tmp_path: Path, command: str, expired_token_endpoint: str):
    # GIVEN temporary credentials that AWS answers as expired (the first call: CloudFormation, or STS for gateway)
    env = bare_environment(
        tmp_path,
        AWS_ACCESS_KEY_ID="ASIAEXAMPLE",
        AWS_SECRET_ACCESS_KEY="secret",
        AWS_SESSION_TOKEN="expired",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_ENDPOINT_URL=expired_token_endpoint,
    )
    # WHEN the command runs against AWS
    done = run_cli(aws_commands(tmp_path)[command], env)
    # THEN one line says the credentials are expired and how to refresh them, exit 2
    assert_one_line(done, "error: your AWS credentials are expired or invalid (ExpiredToken", "aws sso login")


@pytest.mark.parametrize("stack", ["BedrockModelGateway", "BedrockBatchInference"])
def test_smoke_without_a_stack_is_one_line_with_the_fix(tmp_path: Path, capsys, stack: str):
    # GIVEN an account where one of the two stacks is deployed, not the other
    with mock_aws():
        if stack == "BedrockBatchInference":
            deploy_gateway(with_key=True)
        # WHEN the smoke test runs against AWS
        code = main(["smoke", "--target", "aws", "--quiet"])
    # THEN one line names the missing stack, the region and the fix, before any step ran; exit 2
    out, err = capsys.readouterr()
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert f"stack '{stack}' does not exist in region us-east-1: deploy it with `make deploy`" in err
    assert "PASS" not in out and "FAIL" not in out


def test_smoke_without_the_gateway_key_is_one_line_with_the_fix(tmp_path: Path, capsys):
    # GIVEN both stacks deployed, the gateway's secret still holding the string CloudFormation generated
    with mock_aws():
        secret_arn = deploy_gateway(with_key=False)
        deploy_batch_outputs()
        # WHEN the smoke test runs against AWS
        code = main(["smoke", "--target", "aws", "--quiet"])
    # THEN one line says the secret has no key for the bot's access_key_ref and how to put it there; exit 2
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    expected = f"holds no key for 'default': aws secretsmanager put-secret-value --secret-id {secret_arn} "
    assert expected in err and '--secret-string \'{"default": "<key>"}\'' in err


def deploy_gateway(*, with_key: bool) -> str:
    """A "deployed" gateway stack in moto: its outputs and its access-key secret; returns the secret's ARN."""
    secrets = boto3.client("secretsmanager", region_name="us-east-1")
    value = json.dumps({"default": "the-key"}) if with_key else "Xq9-generated-by-CloudFormation"
    arn = secrets.create_secret(Name="ModelGatewayAccessKeys", SecretString=value)["ARN"]
    template = {
        "Resources": {"Handle": {"Type": "AWS::CloudFormation::WaitConditionHandle"}},
        "Outputs": {
            "ApiUrl": {"Value": "https://abc123.execute-api.us-east-1.amazonaws.com/prod/"},
            "MediaBucketName": {"Value": "media"},
            "AccessKeysSecretArn": {"Value": arn},
        },
    }
    cloudformation = boto3.client("cloudformation", region_name="us-east-1")
    cloudformation.create_stack(StackName="BedrockModelGateway", TemplateBody=json.dumps(template))
    return str(arn)


def deploy_batch_outputs() -> None:
    template = {
        "Resources": {"Handle": {"Type": "AWS::CloudFormation::WaitConditionHandle"}},
        "Outputs": {"BucketName": {"Value": "data"}, "StateMachineArn": {"Value": "arn:aws:states:::stateMachine:x"}},
    }
    cloudformation = boto3.client("cloudformation", region_name="us-east-1")
    cloudformation.create_stack(StackName="BedrockBatchInference", TemplateBody=json.dumps(template))


@pytest.fixture
def restored_environment() -> Iterator[None]:
    """The gateway command sets variables in this process's environment (its key, quieter logs): undo them."""
    before = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(before)


def test_gateway_ask_without_model_access_is_one_line_with_the_fix(monkeypatch, capsys, restored_environment):
    # GIVEN Bedrock (the emulator) refusing every model as it does for an account without model access
    def refuse(self: RuntimeState, params: dict[str, Any], streaming: bool = False) -> Any:
        raise ApiError("AccessDeniedException", NO_MODEL_ACCESS)

    monkeypatch.setattr(RuntimeState, "_answer", refuse)
    with BedrockEmulator(EmulatorState(s3=boto3.client("s3", region_name="us-east-1"), step_seconds=0)) as bedrock:
        monkeypatch.setenv("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", bedrock.endpoint_url)
        monkeypatch.setenv("GATEWAY_ACCOUNT_ID", "123456789012")  # instead of asking STS
        # WHEN the gateway serves one question with --target aws
        code = main(["gateway", "--target", "aws", "--ask", "hello", "--bot", "nova-micro"])
    # THEN one line names the bot's model, its region and where to enable access; exit 2
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "error: no access to model us.amazon.nova-micro-v1:0 in region us-east-1: enable it in the Amazon " in err


@pytest.mark.slow
def test_batch_without_model_access_is_one_line_with_the_fix(tmp_path: Path, monkeypatch, capsys):
    # GIVEN a deployed stack whose Bedrock refuses the model when a job is created, as without model access
    def refuse(self: EmulatorState, params: dict[str, Any]) -> dict[str, Any]:
        raise ApiError("AccessDeniedException", NO_MODEL_ACCESS)

    monkeypatch.setattr(EmulatorState, "create_model_invocation_job", refuse)
    path = tmp_path / "topics.csv"
    path.write_text("topic\n" + "".join(f"topic {i}\n" for i in range(100)))
    with LocalRuntime(RuntimeOptions(step_seconds=0.05)) as runtime:
        deploy_outputs(runtime, "BedrockBatchInference")
        # WHEN the CLI runs the batch with --target aws
        code = run_batch(path, tmp_path / "out", "--target", "aws", "--no-resubmit", step_seconds=None)
    # THEN every row failed for want of model access, and one line names the model, the region and the fix; exit 2
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert f"error: no access to model {CLAUDE} in region us-east-1: enable it in the Amazon Bedrock console" in err
