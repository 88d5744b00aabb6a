"""Build the CDK app in-process: used by ``app.py``, the infra tests and the local runtime.

``synth_batch_template()`` returns the CloudFormation template of ``BatchInferenceStack`` with the logical ids the
local runtime needs (the five functions, the bucket, the state machine), without Docker, network or ``cdk.out``.
Bundling is skipped there (the handler code is dispatched in-process), and cdk-nag runs as in ``cdk synth``: a
template that fails the checks raises rather than being returned. It builds the batch stack only: the gateway stack
(``gateway=True``, as ``app.py`` asks) reads the bot file and is not needed there.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks

from stacks.batch_inference_stack import BatchInferenceStack
from stacks.config import AppConfig, GatewayConfig
from stacks.constructs.gateway_batch_api import export_batch_api
from stacks.gateway_stack import GatewayStack

STACK_NAME = "BedrockBatchInference"
GATEWAY_STACK_NAME = "BedrockModelGateway"
CDK_JSON = Path(__file__).resolve().parents[1] / "cdk.json"
FUNCTION_KEYS = ("preprocess", "submit", "poll", "postprocess", "finalize")


@dataclass(frozen=True)
class BatchTemplate:
    template: dict[str, Any]
    function_logical_ids: dict[str, str]  # keyed preprocess, submit, poll, postprocess, finalize
    bucket_logical_id: str
    state_machine_logical_id: str


def build_app(
    context: Mapping[str, object] | None = None,
    *,
    skip_bundling: bool = False,
    outdir: str | None = None,
    gateway: bool = False,
) -> tuple[cdk.App, BatchInferenceStack]:
    """The app ``cdk synth`` runs: cdk.json context, then ``context``, then (CLI) ``-c``; cdk-nag registered.

    ``skip_bundling`` stages no Lambda code (no pip, no Docker), even when the CDK CLI asks for bundling.
    ``gateway`` adds ``GatewayStack`` (``app.py`` does; find it with ``gateway_stack(app)``): it reads the bot file
    named by ``gatewayBotsFile`` and fails naming that key when the file is missing.
    """
    defaults = json.loads(CDK_JSON.read_text()).get("context", {})
    app = cdk.App(
        context={**defaults, **(context or {})},
        post_cli_context={"aws:cdk:bundling-stacks": []} if skip_bundling else None,
        outdir=outdir,
    )
    gateway_cfg = GatewayConfig.from_app(app) if gateway else None
    # Fargate: the certificate's region (an ALB uses certificates of its own region only). The batch stack goes to
    # the same region: the gateway's Batch API uses its bucket and state machine (cross-stack references need one
    # environment), so both stacks have it.
    env = (
        None
        if gateway_cfg is None or gateway_cfg.service is None
        else cdk.Environment(region=gateway_cfg.service.region)
    )
    stack = BatchInferenceStack(
        app,
        STACK_NAME,
        cfg=AppConfig.from_app(app),
        description="Amazon Bedrock batch inference orchestrator (Step Functions Distributed Map)",
        env=env,
    )
    if gateway_cfg is not None:
        cfg = AppConfig.from_app(app)
        gateway_stack = GatewayStack(
            app,
            GATEWAY_STACK_NAME,
            cfg=gateway_cfg,
            function_settings=cfg.functions,
            storage=cfg.storage,
            observability=cfg.observability,
            security=cfg.security,
            # the OpenAI Batch API over this app's batch stack (stacks compose: no lookup)
            batch=export_batch_api(
                stack,
                bucket=stack.data_bucket.bucket,
                state_machine=stack.workflow.state_machine,
                encryption_key=stack.encryption_key,
            ),
            description="Amazon Bedrock model gateway (REST API streaming from Lambda)"
            if gateway_cfg.service is None
            else "Amazon Bedrock model gateway (ECS Fargate behind an Application Load Balancer)",
            env=env,
        )
        gateway_stack.add_stack_dependency(stack)  # it imports the batch stack's exports: deployed after it
    # Cost attribution (cdk.json "tags"): on every taggable resource of every stack; Submit puts them on the jobs too.
    for key, value in AppConfig.from_app(app).security.tags:
        cdk.Tags.of(app).add(key, value)
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    return app, stack


def gateway_stack(app: cdk.App) -> GatewayStack:
    """The gateway stack of an app built with ``build_app(..., gateway=True)``."""
    stack = app.node.find_child(GATEWAY_STACK_NAME)
    assert isinstance(stack, GatewayStack)
    return stack


def synth_batch_template(context: Mapping[str, object] | None = None) -> BatchTemplate:
    """Synthesize in-process with bundling skipped; ``context`` takes cdk.json keys (``{"pollIntervalSeconds": 1}``)."""
    app, stack = build_app(context, skip_bundling=True)
    template = app.synth().get_stack_by_name(stack.stack_name).template
    workflow = stack.workflow
    return BatchTemplate(
        template=template,
        function_logical_ids={key: _logical_id(stack, workflow.functions[key].function) for key in FUNCTION_KEYS},
        bucket_logical_id=_logical_id(stack, stack.data_bucket.bucket),
        state_machine_logical_id=_logical_id(stack, workflow.state_machine),
    )


def _logical_id(stack: cdk.Stack, construct: Any) -> str:
    return stack.get_logical_id(construct.node.default_child)
