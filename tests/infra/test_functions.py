"""The six functions: packaging, runtime, observability settings, environment and their own permissions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from aws_cdk import aws_logs as logs
from aws_cdk.assertions import Template

from lambdas.shared.allocator import FUNCTION_ENVIRONMENT
from stacks.config import LOG_RETENTION_DAYS
from stacks.synth import build_app
from tests.infra.conftest import Synthesized, as_list, policy_statements

HANDLERS = {
    "preprocess": "lambdas.preprocess.handler.lambda_handler",
    "submit": "lambdas.submit_job.handler.lambda_handler",
    "poll": "lambdas.poll_job.handler.lambda_handler",
    "postprocess": "lambdas.postprocess.handler.lambda_handler",
    "resubmit": "lambdas.resubmit.handler.lambda_handler",
    "finalize": "lambdas.finalize.handler.lambda_handler",
}
DATA_PLANE = ("preprocess", "postprocess", "resubmit", "finalize")  # pyarrow
CONTROL_PLANE = ("submit", "poll")
ENVIRONMENT_KEYS = {
    "DATA_BUCKET",
    "BEDROCK_ROLE_ARN",
    "JOB_TIMEOUT_HOURS",
    "MAX_RECORDS_PER_JOB",
    "ALLOWED_MODEL_IDS",
    "MAX_CONCURRENT_JOBS",
    "POWERTOOLS_SERVICE_NAME",
    "POWERTOOLS_METRICS_NAMESPACE",
    "POWERTOOLS_LOG_LEVEL",
}


def _function(synthesized: Synthesized, key: str) -> dict:
    return synthesized.resource(synthesized.stack.workflow.functions[key].function)["Properties"]


@pytest.mark.parametrize("key", DATA_PLANE)
def test_data_plane_functions_are_container_images(synthesized: Synthesized, key: str) -> None:
    # GIVEN a data-plane function (datasets + pyarrow exceed the zip limit)
    props = _function(synthesized, key)
    # WHEN / THEN it is an arm64 image whose command is the handler, with the large memory and /tmp of the config
    assert props["PackageType"] == "Image"
    assert props["ImageConfig"] == {"Command": [HANDLERS[key]]}
    assert props["Architectures"] == ["arm64"]
    assert props["MemorySize"] == 3008
    assert props["EphemeralStorage"] == {"Size": 10240}
    assert props["Timeout"] == 900


@pytest.mark.parametrize("key", CONTROL_PLANE)
def test_control_plane_functions_are_arm64_zips(synthesized: Synthesized, key: str) -> None:
    # GIVEN a control-plane function
    props = _function(synthesized, key)
    # WHEN / THEN it is a zip on the pinned Python runtime, arm64, with the handler path staged at the asset root
    assert "PackageType" not in props
    assert props["Runtime"] == "python3.13"
    assert props["Handler"] == HANDLERS[key]
    assert props["Architectures"] == ["arm64"]
    assert props["MemorySize"] == 256
    assert props["Timeout"] <= 120


@pytest.mark.parametrize("key", HANDLERS)
def test_every_function_traces_logs_json_and_gets_the_contract_environment(synthesized: Synthesized, key: str) -> None:
    # GIVEN any function
    fn = synthesized.stack.workflow.functions[key]
    props = _function(synthesized, key)
    # WHEN reading its settings
    variables = props["Environment"]["Variables"]
    # THEN X-Ray is active, logs are JSON in its own log group with retention, and the environment is complete
    assert props["TracingConfig"] == {"Mode": "Active"}
    assert props["LoggingConfig"]["LogFormat"] == "JSON"
    assert props["LoggingConfig"]["LogGroup"] == {"Ref": synthesized.logical_id(fn.log_group)}
    assert synthesized.resource(fn.log_group)["Properties"]["RetentionInDays"] == 30
    assert set(variables) == ENVIRONMENT_KEYS | set(FUNCTION_ENVIRONMENT.get(key, {}))
    assert variables["POWERTOOLS_METRICS_NAMESPACE"] == "BedrockBatch"
    assert variables["ALLOWED_MODEL_IDS"].split(",")[0] == "anthropic.claude-3-haiku-20240307-v1:0"
    assert props["Role"] == {"Fn::GetAtt": [synthesized.logical_id(fn.role), "Arn"]}


def test_postprocess_and_preprocess_alone_keep_freed_memory_for_their_next_batch(synthesized: Synthesized) -> None:
    # GIVEN every function's environment
    env = {key: _function(synthesized, key)["Environment"]["Variables"] for key in HANDLERS}
    # WHEN looking for glibc settings beyond the image's (lambdas/Dockerfile)
    name = "MALLOC_TRIM_THRESHOLD_"
    trims = {key: variables[name] for key, variables in env.items() if name in variables}
    # THEN only postprocess (64 MiB) and preprocess (256 MiB) have one, the values of lambdas/shared/allocator.py:
    # the others keep the image's
    assert trims == {"postprocess": str(64 << 20), "preprocess": str(256 << 20)}
    assert trims == {key: FUNCTION_ENVIRONMENT[key][name] for key in ("postprocess", "preprocess")}


def test_each_function_has_a_role_of_its_own(synthesized: Synthesized) -> None:
    # GIVEN the six functions
    roles = {_function(synthesized, key)["Role"]["Fn::GetAtt"][0] for key in HANDLERS}
    # WHEN / THEN no two share a role
    assert len(roles) == len(HANDLERS)


def test_only_submit_passes_the_bedrock_role_and_only_to_bedrock(synthesized: Synthesized, template: Template) -> None:
    # GIVEN the roles of the six functions
    bedrock_role = {"Fn::GetAtt": [synthesized.logical_id(synthesized.stack.bedrock_role.role), "Arn"]}
    functions = synthesized.stack.workflow.functions
    # WHEN collecting their iam:PassRole statements
    passing = {
        key: [s for s in policy_statements(template, synthesized.logical_id(fn.role)) if s["Action"] == "iam:PassRole"]
        for key, fn in functions.items()
    }
    # THEN submit alone may pass the Bedrock role, and only to bedrock.amazonaws.com
    assert passing["submit"] == [
        {
            "Action": "iam:PassRole",
            "Effect": "Allow",
            "Resource": bedrock_role,
            "Condition": {"StringEquals": {"iam:PassedToService": "bedrock.amazonaws.com"}},
        }
    ]
    assert all(not statements for key, statements in passing.items() if key != "submit")


def test_bedrock_job_actions_are_scoped_to_invocation_jobs(synthesized: Synthesized, template: Template) -> None:
    # GIVEN the submit and poll roles
    functions = synthesized.stack.workflow.functions
    actions = {
        key: {
            action: as_list(s["Resource"])
            for s in policy_statements(template, synthesized.logical_id(functions[key].role))
            for action in as_list(s["Action"])
            if action.startswith("bedrock:")
        }
        for key in ("submit", "poll")
    }
    # WHEN / THEN poll gets and stops jobs, submit creates (and tags) them on the allowed models and lists them for
    # its job-slot check (ListModelInvocationJobs has no resource type: '*'), and nothing gets bedrock:*
    jobs_arn = json.dumps(actions["poll"]["bedrock:GetModelInvocationJob"])
    assert "model-invocation-job/*" in jobs_arn
    assert set(actions["poll"]) == {"bedrock:GetModelInvocationJob", "bedrock:StopModelInvocationJob"}
    assert set(actions["submit"]) == {
        "bedrock:CreateModelInvocationJob",
        "bedrock:TagResource",
        "bedrock:ListModelInvocationJobs",
    }
    assert actions["submit"]["bedrock:ListModelInvocationJobs"] == ["*"]
    create = json.dumps(actions["submit"]["bedrock:CreateModelInvocationJob"])
    assert "model-invocation-job/*" in create
    assert "inference-profile/us.anthropic.claude-3-5-haiku-20241022-v1:0" in create


def test_only_preprocess_reads_service_quotas_and_only_the_two_list_actions(
    synthesized: Synthesized, template: Template
) -> None:
    # GIVEN the roles of the six functions
    functions = synthesized.stack.workflow.functions
    # WHEN collecting their Service Quotas actions
    actions = {
        key: {
            action: as_list(s["Resource"])
            for s in policy_statements(template, synthesized.logical_id(fn.role))
            for action in as_list(s["Action"])
            if action.startswith("servicequotas:")
        }
        for key, fn in functions.items()
    }
    # THEN preprocess alone lists the applied and the default quotas (the calls of lambdas/preprocess/quotas.py), on '*'
    # (neither action has a resource type), and no function may change a quota
    assert actions.pop("preprocess") == {
        "servicequotas:ListServiceQuotas": ["*"],
        "servicequotas:ListAWSDefaultServiceQuotas": ["*"],
    }
    assert all(not granted for granted in actions.values())
    # AND the stack passes maxConcurrentJobs to the functions, which cap it by the model's quota
    assert _function(synthesized, "preprocess")["Environment"]["Variables"]["MAX_CONCURRENT_JOBS"] == "7"  # conftest


def test_image_build_context_holds_only_the_handler_sources(synthesized: Synthesized) -> None:
    # GIVEN the staged container-image asset (synth copies the build context, Docker builds it at deploy)
    manifest = json.loads((Path(synthesized.assembly.directory) / "BedrockBatchInference.assets.json").read_text())
    (image,) = manifest["dockerImages"].values()
    context = Path(synthesized.assembly.directory) / image["source"]["directory"]
    # WHEN listing it
    top_level = {path.name for path in context.iterdir()}
    size = sum(path.stat().st_size for path in context.rglob("*") if path.is_file())
    # THEN only the allow-listed entries are there (no .venv, node_modules, tests, cdk.out), and it is small
    assert top_level <= {"lambdas", "prompt_templates.py", "requirements-lambda.txt", "requirements-lambda-data.txt"}
    assert {"lambdas", "requirements-lambda-data.txt"} <= top_level
    assert image["source"]["dockerFile"] == "lambdas/Dockerfile"
    assert not list(context.rglob("__pycache__"))
    assert size < 5_000_000


def test_every_configurable_log_retention_is_a_cdk_retention() -> None:
    # GIVEN the retention periods config accepts / WHEN mapping them / THEN each names a RetentionDays member
    assert all(logs.RetentionDays[name] for name in LOG_RETENTION_DAYS.values())


@pytest.mark.parametrize(
    ("key", "writable"),
    [
        ("resubmit", ["/runs/*/retry/*"]),  # the resubmission jobs, their manifest and plan
        ("finalize", ["/runs/*/summary.json", "/runs/*/output/*"]),  # merges resubmitted rows into the outputs
    ],
)
def test_resubmission_functions_write_only_their_keys(
    synthesized: Synthesized, template: Template, key: str, writable: list[str]
) -> None:
    # GIVEN the role of a function taking part in the resubmission
    role = synthesized.logical_id(synthesized.stack.workflow.functions[key].role)
    bucket_arn = {"Fn::GetAtt": [synthesized.logical_id(synthesized.stack.data_bucket.bucket), "Arn"]}
    # WHEN collecting what it may put into the bucket
    puts = [s for s in policy_statements(template, role) if "s3:PutObject" in as_list(s["Action"])]
    # THEN it writes those key patterns and nothing else
    resources = [resource for s in puts for resource in as_list(s["Resource"])]
    assert all(resource["Fn::Join"][1][0] == bucket_arn for resource in resources)
    assert sorted(resource["Fn::Join"][1][1] for resource in resources) == sorted(writable)


def _s3_access(synthesized: Synthesized, template: Template, key: str) -> dict[str, list[str]]:
    """What a function may do in the data bucket: key patterns by action, and the s3:prefix values it may list."""
    role = synthesized.logical_id(synthesized.stack.workflow.functions[key].role)
    bucket_arn = {"Fn::GetAtt": [synthesized.logical_id(synthesized.stack.data_bucket.bucket), "Arn"]}
    access: dict[str, list[str]] = {}
    for statement in policy_statements(template, role):
        for action in as_list(statement["Action"]):
            if not action.startswith("s3:"):
                continue
            if action == "s3:ListBucket":
                assert statement["Resource"] == bucket_arn
                access[action] = statement["Condition"]["StringLike"]["s3:prefix"]
                continue
            resources = as_list(statement["Resource"])
            assert all(resource["Fn::Join"][1][0] == bucket_arn for resource in resources)
            access.setdefault(action, []).extend(resource["Fn::Join"][1][1] for resource in resources)
    return {action: sorted(patterns) for action, patterns in access.items()}


@pytest.mark.parametrize(
    ("key", "reads", "writes", "lists"),
    [
        # the input (an upload, an earlier run's file, or a prepared batch file) -> the run's records, job files and
        # manifest
        (
            "preprocess",
            ["/inputs/*", "/openai/batches/*/prepared.jsonl", "/runs/*"],
            [
                "/runs/*/jobs.json",
                "/runs/*/jobs/*",
                "/runs/*/records.json",
                "/runs/*/records.parquet",
                "/runs/*/records/*",
            ],
            ["inputs/*", "runs/*"],
        ),
        # the job's rows and what Bedrock wrote for the job -> its output and result
        (
            "postprocess",
            [
                "/runs/*/bedrock-output/*",
                "/runs/*/records.json",
                "/runs/*/records.parquet",
                "/runs/*/records/*",
                "/runs/*/retry/rows/*",
            ],
            ["/runs/*/output/*", "/runs/*/results/*"],
            ["runs/*/bedrock-output/*"],
        ),
        # the planned jobs' manifest, results, outputs and input lines -> the resubmission files
        (
            "resubmit",
            ["/runs/*/jobs.json", "/runs/*/jobs/*", "/runs/*/output/*", "/runs/*/results/*"],
            ["/runs/*/retry/*"],
            ["runs/*/cancel.json*", "runs/*/results/*"],
        ),
        # an on-demand job's input file and what it wrote so far (it lists the cancel marker) -> its batch-format output
        (
            "on_demand",
            ["/runs/*/bedrock-output/*", "/runs/*/jobs/*"],
            ["/runs/*/bedrock-output/*"],
            ["runs/*/bedrock-output/*", "runs/*/cancel.json*"],
        ),
        # manifests, results, outputs and the resubmission plan -> the merged outputs and the summary
        (
            "finalize",
            ["/runs/*/jobs.json", "/runs/*/output/*", "/runs/*/results/*", "/runs/*/retry/plan.json"],
            ["/runs/*/output/*", "/runs/*/summary.json"],
            ["runs/*/results/*", "runs/*/retry/*"],  # listing retry/ tells a missing plan (403 otherwise) apart
        ),
    ],
)
def test_each_data_function_reaches_only_the_layout_prefixes_it_uses(
    synthesized: Synthesized, template: Template, key: str, reads: list[str], writes: list[str], lists: list[str]
) -> None:
    # GIVEN a data-plane function's role / WHEN collecting its S3 permissions on the data bucket
    access = _s3_access(synthesized, template, key)
    # THEN it gets, puts and lists the key patterns of lambdas/shared/layout.py it works on, and nothing else
    assert access == {
        "s3:GetObject": sorted(reads),
        "s3:PutObject": sorted(writes),
        "s3:AbortMultipartUpload": sorted(writes),
        "s3:ListBucket": sorted(lists),
    }


@pytest.mark.parametrize("key", CONTROL_PLANE)
def test_control_plane_functions_only_list_the_runs_cancel_marker(
    synthesized: Synthesized, template: Template, key: str
) -> None:
    # GIVEN Submit and Poll (Bedrock reads and writes the job files with its own role)
    # WHEN / THEN the one thing they may do in the bucket is list a run's cancel marker key (its presence is the
    # request): no object of the bucket is theirs to read
    assert _s3_access(synthesized, template, key) == {"s3:ListBucket": ["runs/*/cancel.json*"]}


def test_lambda_execution_roles_trust_lambda_without_source_conditions(synthesized: Synthesized) -> None:
    # GIVEN every function's execution role
    for fn in synthesized.stack.workflow.functions.values():
        (statement,) = synthesized.resource(fn.role)["Properties"]["AssumeRolePolicyDocument"]["Statement"]
        # THEN only lambda.amazonaws.com may assume it, and without aws:SourceAccount / aws:SourceArn conditions: the
        # Lambda guide documents no such keys for the execution role's trust (python_function.py, docs/security.md)
        assert statement["Principal"] == {"Service": "lambda.amazonaws.com"}
        assert statement["Action"] == "sts:AssumeRole" and "Condition" not in statement


def test_cdk_json_prices_reach_finalize_only() -> None:
    # GIVEN cdk.json prices for one model
    prices = {"amazon.nova-lite-v1:0": {"input_per_1m": 0.07, "output_per_1m": 0.3}}
    _app, stack = build_app({"prices": prices}, skip_bundling=True)
    template = Template.from_stack(stack).to_json()["Resources"]

    # WHEN reading the functions' environments
    def variables(fn: Any) -> dict[str, str]:
        return template[stack.get_logical_id(fn.function.node.default_child)]["Properties"]["Environment"]["Variables"]

    env = {key: variables(fn) for key, fn in stack.workflow.functions.items()}
    # THEN Finalize gets them as PRICES (what its price table reads over prices.json), and no other function does
    assert json.loads(env["finalize"]["PRICES"]) == prices
    assert [key for key, variables in env.items() if "PRICES" in variables] == ["finalize"]


def test_the_on_demand_runner_is_a_zip_of_lambdas_longest_timeout_invoking_only_the_allowed_models(
    synthesized: Synthesized, template: Template
) -> None:
    # GIVEN the function of "Run job on demand"
    fn = synthesized.stack.workflow.functions["on_demand"]
    props = synthesized.resource(fn.function)["Properties"]
    # WHEN reading its settings and its Bedrock statements
    bedrock = [
        statement
        for statement in policy_statements(template, synthesized.logical_id(fn.role))
        if any(action.startswith("bedrock:") for action in as_list(statement["Action"]))
    ]
    # THEN it is a small zip (no pyarrow: it moves JSON lines) that may run Lambda's full 15 minutes, with its
    # concurrency from cdk.json (default 4)
    assert props["Handler"] == "lambdas.on_demand.handler.lambda_handler"
    assert "PackageType" not in props and props["Timeout"] == 900 and props["MemorySize"] == 256
    assert props["Environment"]["Variables"]["ON_DEMAND_CONCURRENCY"] == "4"
    # AND it may call bedrock:InvokeModel (InvokeModel, and Converse, which IAM authorizes as InvokeModel) on the
    # models and profiles of allowedModelIds only, as the batch role may; nothing streams, nothing else of Bedrock
    (statement,) = bedrock
    assert statement["Action"] == "bedrock:InvokeModel"
    resources = [json.dumps(resource) for resource in as_list(statement["Resource"])]
    assert resources and all("foundation-model/" in r or "inference-profile/" in r for r in resources)
    assert any("anthropic.claude-3-haiku-20240307-v1:0" in r for r in resources)
