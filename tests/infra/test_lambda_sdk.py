"""The AWS SDK the functions run with is the one the tests ran with, and it has every call the code makes.

Three separate checks, all offline: the Lambda requirements pin boto3/botocore to the installed (tested) versions;
each zip function's bundle (pip faked, the staging real) keeps that SDK with the models of the services its code
calls; and every call its code makes (read from the source, ``tests/infra/aws_calls.py``) exists, with its request
parameters and the response members it reads, in that botocore's models.
"""

from __future__ import annotations

import asyncio
import copy
import json
import re
import subprocess
from importlib.metadata import version
from pathlib import Path
from typing import Any

import botocore.session
import pytest
from aiobotocore.session import get_session
from botocore.model import ServiceModel

from stacks.constructs import local_bundling
from stacks.constructs.model_gateway import APP
from stacks.constructs.python_function import PROJECT_ROOT, Packaging, PythonFunction
from stacks.synth import build_app
from tests.infra.aws_calls import AwsCall, check, function_calls

# The calls whose request parameters the source does not fully spell out: boto3's transfer methods (positional
# arguments; boto3 builds the requests) and the gateway's Converse requests (lambdas/gateway/translate.py: what the
# analysis reads of them is checked, but the bot file's additionalModelRequestFields, a document, are spread in with
# ``**``; botocore's parameter validation checks the whole request in the gateway tests). Any other call must show
# all its parameters, so that this test checks them.
PARAMETERS_BUILT_ELSEWHERE = {
    "lambdas.gateway.factory": {"Converse", "ConverseStream"},
    # a listing's optional StartAfter / ContinuationToken go in a dict built first (the Batch API's pages)
    "lambdas.gateway.batch_records": {"ListObjectsV2"},
    # a lease's update is computed from the item it read (the condition, the values), then sent (team-key limits)
    "lambdas.gateway.key_store": {"UpdateItem"},
    "*": {"PutObject", "CreateMultipartUpload", "UploadPart", "CompleteMultipartUpload", "HeadObject", "GetObject"}
    | {"CopyObject", "UploadPartCopy"},
}


# What the analysis reports but the code never sends, and why: it reads both branches of a condition.
NOT_SENT = {
    "lambdas.gateway.factory: Converse takes no parameter guardrailConfig.streamProcessingMode": (
        "guardrails.with_guardrail adds streamProcessingMode for ConverseStream only (streaming=True)"
    ),
}


@pytest.fixture(scope="module")
def functions() -> dict[str, PythonFunction]:
    """Every function of both stacks, by construct path (bundling skipped: the assets are checked below)."""
    app, _ = build_app(skip_bundling=True, gateway=True)
    found = {c.node.path: c for c in app.node.find_all() if isinstance(c, PythonFunction)}
    assert len(found) == 8  # seven batch functions and the gateway
    return found


@pytest.fixture(scope="module")
def calls(functions: dict[str, PythonFunction]) -> dict[str, list[AwsCall]]:
    return {path: function_calls(entry_module(fn)) for path, fn in functions.items()}


def entry_module(fn: PythonFunction) -> str:
    """The module Lambda starts: the handler's, or for the gateway's run.sh the app uvicorn serves."""
    return APP.split(":")[0] if fn.handler == "run.sh" else fn.handler.rsplit(".", 1)[0]


def pins(requirements: str) -> dict[str, str]:
    """name -> pinned version of a requirements file, following ``-r`` includes."""
    found: dict[str, str] = {}
    for line in (PROJECT_ROOT / requirements).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("-r "):
            found |= pins(line[3:].strip())
        elif "==" in line:
            name, pinned = line.split("==")
            found[re.sub(r"\[.*\]", "", name).strip().lower()] = pinned.strip()
    return found


@pytest.mark.parametrize("requirements", ["requirements-lambda.txt", "requirements-lambda-data.txt"])
def test_the_batch_functions_pin_the_sdk_the_tests_run_with(requirements: str) -> None:
    # GIVEN the requirements of the control-plane zip and of the data-plane image
    pinned = pins(requirements)
    # WHEN / THEN boto3 and botocore are pinned to the versions installed here, which every test ran with
    assert (pinned.get("boto3"), pinned.get("botocore")) == (version("boto3"), version("botocore"))


def test_the_gateway_pins_the_botocore_the_tests_run_with() -> None:
    # GIVEN the gateway's requirements (aiobotocore brings botocore; the gateway needs no boto3)
    # WHEN / THEN botocore is pinned to the installed version, as aiobotocore is
    assert pins("requirements-gateway.txt")["botocore"] == version("botocore")
    assert pins("requirements-gateway.txt")["aiobotocore"] == version("aiobotocore")


def test_the_data_plane_image_installs_the_pinned_sdk_into_the_task_root() -> None:
    # GIVEN the data-plane Dockerfile
    dockerfile = (PROJECT_ROOT / "lambdas" / "Dockerfile").read_text()
    # WHEN / THEN it pip-installs the pinned requirements (boto3/botocore included) into the task root, which comes
    # before the base image's own SDK on the search path
    assert 'pip install --no-cache-dir --requirement requirements-lambda-data.txt --target "${LAMBDA_TASK_ROOT}"' in (
        dockerfile
    )
    assert "-r requirements-lambda.txt" in (PROJECT_ROOT / "requirements-lambda-data.txt").read_text()


# Services a zip function may bundle without its code calling them, and why. None: not even sts, see
# test_the_gateway_reads_its_lambda_credentials_without_creating_a_client.
SERVICES_WITHOUT_CALLS: dict[str, str] = {}


def test_every_zip_function_declares_exactly_the_services_its_code_calls(
    functions: dict[str, PythonFunction], calls: dict[str, list[AwsCall]]
) -> None:
    # GIVEN each zip function and the services its code calls
    zips = {path: fn for path, fn in functions.items() if fn.packaging is Packaging.ZIP}
    assert len(zips) == 4  # Submit, Poll, Run on demand, the gateway
    for path, fn in zips.items():
        called, declared = {call.service for call in calls[path]}, set(fn.aws_sdk_services)
        # WHEN / THEN it bundles the SDK with the models of those services (none: no SDK), and of no other service
        # but those that need no call of the code
        assert called <= declared, f"{path} calls {sorted(called)}, bundles models of {sorted(declared)}"
        assert declared - called <= set(SERVICES_WITHOUT_CALLS), f"{path}: no call of {sorted(declared - called)}"


def test_the_gateway_reads_its_lambda_credentials_without_creating_a_client(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # GIVEN the environment Lambda gives a function (its role's credentials in AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY
    # and AWS_SESSION_TOKEN; no profile, no config file, no web identity), and a session made as the gateway's
    # (lambdas/gateway/clients.py: aiobotocore's get_session), whose every client creation (an STS client for an
    # assumed role, say) fails
    for name in (
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_ROLE_ARN",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_SECURITY_TOKEN",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    env = {"AWS_ACCESS_KEY_ID": "ASIAEXAMPLE", "AWS_SECRET_ACCESS_KEY": "secret", "AWS_SESSION_TOKEN": "token"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    session = get_session()

    def no_client(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"a credential provider created a client: {args}")

    monkeypatch.setattr(session, "create_client", no_client)
    # WHEN the session resolves its credentials and a client would sign with them
    credentials = asyncio.run(session.get_credentials())
    frozen = asyncio.run(credentials.get_frozen_credentials())
    # THEN the environment provider answers first: no STS call, so the zip needs no sts model
    assert credentials.method == "env" and frozen.access_key == "ASIAEXAMPLE" and frozen.token == "token"


def test_every_call_is_in_the_pinned_sdk(calls: dict[str, list[AwsCall]]) -> None:
    # GIVEN every AWS call of every function (zip and image) / WHEN checking it against the installed botocore
    # (a problem without its line number: an edit above a known exception does not break it)
    problems = {
        re.sub(r":\d+: ", ": ", problem, count=1) for found in calls.values() for c in found for problem in check(c)
    }
    # THEN the operation, each request parameter and each response member read exist (but where a branch never sends
    # what the analysis saw in another one)
    assert sorted(problems - set(NOT_SENT)) == []
    assert set(NOT_SENT) <= problems  # each exception is still needed


def test_the_calls_the_control_plane_makes_are_all_seen(calls: dict[str, list[AwsCall]]) -> None:
    # GIVEN what the analysis found for Submit and Poll
    seen = {(c.operation, c.params, c.reads) for found in calls.values() for c in found if c.service == "bedrock"}
    create = next(c for c in seen if c[0] == "CreateModelInvocationJob")
    get_reads = {path for c in seen if c[0] == "GetModelInvocationJob" for path in c[2]}  # Poll gets a job twice
    # THEN it read the parameters Submit sends (those of the optional settings included) and what Poll reads
    assert {("modelInvocationType",), ("vpcConfig", "subnetIds"), ("tags",), ("clientRequestToken",)} <= set(create[1])
    assert {("status",), ("message",), ("errorRecordCount",), ("jobExpirationTime",)} <= get_reads
    assert {c[0] for c in seen} == {"CreateModelInvocationJob", "GetModelInvocationJob", "StopModelInvocationJob"}


def test_every_call_shows_its_parameters_unless_listed(calls: dict[str, list[AwsCall]]) -> None:
    # GIVEN the calls whose request parameters the analysis could not read
    unread = {(c.where.split(":")[0], c.operation) for found in calls.values() for c in found if not c.params_known}
    # WHEN / THEN each is a known case (so a new call's parameters are always checked)
    listed = {
        (module, operation)
        for module, operation in unread
        if operation in PARAMETERS_BUILT_ELSEWHERE.get(module, set()) | PARAMETERS_BUILT_ELSEWHERE["*"]
    }
    assert unread == listed


def test_the_check_finds_what_an_older_sdk_lacks(calls: dict[str, list[AwsCall]]) -> None:
    # GIVEN Submit's CreateModelInvocationJob and Poll's GetModelInvocationJob, and a bedrock model from before
    # modelInvocationType and the per-job record counts (both members removed from the installed one)
    model = botocore.session.get_session().get_service_model("bedrock")
    older: dict[str, Any] = copy.deepcopy(model._service_description)  # noqa: SLF001
    del older["shapes"]["CreateModelInvocationJobRequest"]["members"]["modelInvocationType"]
    del older["shapes"]["GetModelInvocationJobResponse"]["members"]["errorRecordCount"]
    older_model = ServiceModel(older, "bedrock")
    bedrock_calls = [c for found in calls.values() for c in found if c.service == "bedrock"]
    # WHEN checking them against it
    problems = sorted({p for call in bedrock_calls for p in check(call, older_model)})
    # THEN both are found, naming the code (module:line) that uses them
    assert len(problems) == 2
    assert re.fullmatch(
        r"lambdas\.poll_job\.logic:\d+: GetModelInvocationJob returns no member errorRecordCount", problems[0]
    )
    assert re.fullmatch(
        r"lambdas\.submit_job\.logic:\d+: CreateModelInvocationJob takes no parameter modelInvocationType", problems[1]
    )


@pytest.fixture
def fake_pip(monkeypatch: pytest.MonkeyPatch) -> None:
    """pip, faked: each package pinned in the requirements file becomes a folder, botocore with a model folder for
    every service of the installed botocore and its shared data files."""

    def fake_run(args: list[str], **_kwargs: Any) -> subprocess.CompletedProcess[str]:
        target = Path(args[args.index("--target") + 1])
        requirements = Path(args[args.index("--requirement") + 1]).relative_to(PROJECT_ROOT)
        for name in pins(str(requirements)):
            (target / name.replace("-", "_")).mkdir(parents=True, exist_ok=True)
        data = target / "botocore" / "data"
        for service in botocore.session.get_session().get_available_services():
            (data / service / "2020-01-01").mkdir(parents=True, exist_ok=True)
        (data / "endpoints.json").write_text(json.dumps({}))
        return subprocess.CompletedProcess(args, 0)

    monkeypatch.setattr(local_bundling.subprocess, "run", fake_run)


@pytest.mark.usefixtures("fake_pip")
def test_each_zip_bundle_holds_the_sdk_with_the_models_of_the_services_its_code_calls(
    functions: dict[str, PythonFunction], calls: dict[str, list[AwsCall]], tmp_path: Path
) -> None:
    for path, fn in functions.items():
        if fn.packaging is not Packaging.ZIP:
            continue
        # GIVEN a zip function's own bundler (its requirements and services) / WHEN bundling
        assert fn.bundling is not None
        asset = tmp_path / fn.node.id
        assert fn.bundling.try_bundle(str(asset), image=None)  # type: ignore[arg-type]
        # THEN the asset holds botocore (and boto3 where the code uses it) with the models of the called services
        data = asset / "botocore" / "data"
        assert data.is_dir(), f"{path}: its asset has no botocore"
        models = {p.name for p in data.iterdir() if p.is_dir()}
        assert {call.service for call in calls[path]} <= models == set(fn.aws_sdk_services)
        assert (data / "endpoints.json").is_file()
        if fn.handler != "run.sh":  # the batch functions create their clients with boto3
            assert (asset / "boto3").is_dir(), f"{path}: its asset has no boto3"
