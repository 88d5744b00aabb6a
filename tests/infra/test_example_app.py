"""examples/extend_app: a team's stack reusing the constructs synthesizes with its own resources and passes cdk-nag."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aws_cdk.assertions import Match, Template

from examples.extend_app.stack import PROMPT_TEMPLATES_FILE, TEAM_MODEL_ID, TeamGenAiStack, build_app
from tests.infra.conftest import cfn_lint, policy_statements


@dataclass(frozen=True)
class Example:
    stack: TeamGenAiStack
    template: Template
    outdir: Path

    def logical_id(self, construct: Any) -> str:
        return self.stack.get_logical_id(construct.node.default_child)

    def environment(self, construct: Any) -> dict[str, Any]:
        resource = self.template.to_json()["Resources"][self.logical_id(construct)]
        return resource["Properties"]["Environment"]["Variables"]


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> Example:
    outdir = tmp_path_factory.mktemp("extend_app")
    app, stack = build_app(skip_bundling=True, outdir=str(outdir))
    app.synth()  # cdk-nag runs here and raises on an unacknowledged finding
    return Example(stack=stack, template=Template.from_stack(stack), outdir=outdir)


def test_example_has_no_unacknowledged_nag_findings(example: Example) -> None:
    # GIVEN the example app synthesized with AwsSolutionsChecks
    report = json.loads((example.outdir / "validation-report.json").read_text())
    # WHEN collecting what the plugins still report / THEN nothing, neither errors nor warnings
    assert [v["ruleName"] for plugin in report["pluginReports"] for v in plugin["violations"]] == []


def test_example_template_passes_cfn_lint(example: Example, tmp_path: Path) -> None:
    assert cfn_lint({example.stack.stack_name: example.template.to_json()}, tmp_path) == ""


def test_the_teams_buckets_are_used_and_no_other_bucket_is_created(example: Example) -> None:
    # GIVEN the example, which brings its own data and media buckets
    stack = example.stack
    # WHEN counting buckets and reading where the functions point
    buckets = example.template.find_resources("AWS::S3::Bucket")
    # THEN only the team's three buckets exist (DataBucket wrapped the existing one), and the workflow and the gateway
    # use the team's data and media buckets
    assert set(buckets) == {
        example.logical_id(b) for b in (stack.access_logs_bucket, stack.data_bucket, stack.media_bucket)
    }
    assert stack.data.bucket is stack.data_bucket and stack.data.access_logs_bucket is None
    assert example.environment(stack.batch.functions["preprocess"].function)["DATA_BUCKET"] == {
        "Ref": example.logical_id(stack.data_bucket)
    }
    assert stack.gateway.media_bucket.bucket is stack.media_bucket
    assert example.environment(stack.gateway.function.function)["GATEWAY_MEDIA_BUCKET"] == {
        "Ref": example.logical_id(stack.media_bucket)
    }


def test_reused_constructs_are_in_the_template(example: Example) -> None:
    # GIVEN the example stack
    template = example.template
    # WHEN / THEN it holds the workflow's state machine, its seven functions, its own Bedrock role, and the gateway
    template.resource_count_is("AWS::StepFunctions::StateMachine", 1)
    template.resource_count_is("AWS::ApiGateway::RestApi", 1)
    template.resource_count_is("AWS::SecretsManager::Secret", 2)  # the access keys and the admin key (team keys)
    template.resource_count_is("AWS::DynamoDB::Table", 1)  # the team keys
    assert set(example.stack.batch.functions) == {
        "preprocess",
        "submit",
        "poll",
        "on_demand",
        "postprocess",
        "resubmit",
        "finalize",
    }
    template.has_resource_properties(
        "AWS::IAM::Role",
        {
            "AssumeRolePolicyDocument": {
                "Statement": [Match.object_like({"Principal": {"Service": "bedrock.amazonaws.com"}})]
            }
        },
    )
    submit = example.stack.batch.functions["submit"]
    statements = policy_statements(template, example.logical_id(submit.role))
    assert any(s["Action"] == "iam:PassRole" for s in statements)


def test_the_teams_key_encrypts_state_machine_logs_and_job_output(example: Example) -> None:
    # GIVEN the team's key
    stack = example.stack
    key = {"Fn::GetAtt": [example.logical_id(stack.key), "Arn"]}
    # WHEN reading the state machine, Submit's environment and the log groups
    machine = example.template.to_json()["Resources"][example.logical_id(stack.batch.state_machine)]
    # THEN all of them use the team's key
    assert machine["Properties"]["EncryptionConfiguration"]["KmsKeyId"] == key
    assert example.environment(stack.batch.functions["submit"].function)["OUTPUT_KMS_KEY_ID"] == key
    for group in example.template.find_resources("AWS::Logs::LogGroup").values():
        assert group["Properties"]["KmsKeyId"] == key


def test_the_teams_model_is_allowed(example: Example) -> None:
    # GIVEN allowedModelIds of the example's cdk.json, which adds the team's model
    stack = example.stack
    # WHEN reading the functions' allow-list and the Bedrock role's policy
    allowed = example.environment(stack.batch.functions["preprocess"].function)["ALLOWED_MODEL_IDS"].split(",")
    role_id = example.logical_id(stack.batch.bedrock_role)
    resources = json.dumps(policy_statements(example.template, role_id))
    # THEN the runs may use it and Bedrock may invoke it
    assert TEAM_MODEL_ID in allowed
    assert f"foundation-model/{TEAM_MODEL_ID}" in resources


def test_the_teams_prompt_template_is_staged_into_the_image(example: Example) -> None:
    # GIVEN the example's prompt_templates_file
    name = Path(PROMPT_TEMPLATES_FILE).name
    # WHEN reading the data-plane functions' environment and the image asset
    env = example.environment(example.stack.batch.functions["preprocess"].function)
    assets = json.loads((example.outdir / "TeamGenAi.assets.json").read_text())["dockerImages"]
    (image,) = assets.values()  # one image for the four data-plane functions
    # THEN the file is in the build context, the Dockerfile copies it (build arg), and the runtime finds it
    assert env["PROMPT_TEMPLATES_FILE"] == f"/var/task/{name}"
    assert image["source"]["dockerBuildArgs"] == {"PROMPT_TEMPLATES_FILE": PROMPT_TEMPLATES_FILE}
    staged = example.outdir / image["source"]["directory"] / PROMPT_TEMPLATES_FILE
    assert json.loads(staged.read_text())["support_ticket_triage"].startswith("You triage")
    assert "PROMPT_TEMPLATES_FILE" not in example.environment(example.stack.batch.functions["submit"].function)
