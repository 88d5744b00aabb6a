"""The gateway's OpenAI Batch API on the batch stack: what the gateway is told (the bucket, the state machine) and
what it may do with them, declared once (``BATCH_API_ACCESS``) and granted from that declaration.

```
gateway ─ openai/files/*, openai/batches/*  (Get, Put, Delete, List under openai/)     ─> batch stack's data bucket
        ─ runs/batch-*/... (its batches' runs: Get, List; Put cancel.json)
        ─ StartExecution (execution name = batch id), DescribeExecution of its executions ─> batch state machine
        ─ with kmsKey: the bucket's key through S3, and the state machine's key (Decrypt, through Step Functions)
          to read the executions it describes
```
The stacks compose: ``build_app`` passes the batch stack's bucket, state machine and key to the gateway stack
(``BatchApiTarget``); nothing is looked up. A gateway built without one serves no Batch API (the routes answer 501).
"""

from __future__ import annotations

from dataclasses import dataclass

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_stepfunctions as sfn

from stacks.constructs.data_bucket import RUNS_PREFIX, grant_objects
from stacks.constructs.encryption_key import grant_s3_objects_key
from stacks.constructs.nag import acknowledge_wildcard_resource

OPENAI_PREFIX = "openai/"  # the Files and Batches API's objects (lambdas.gateway.batch_store)
# The runs of batches: a batch's execution is named by its id (batch_<hex>), its run id is made from that name
# (lambdas.shared.layout.run_id_from_execution_name: "batch-<hex>-<digest>"); no other run's files
BATCH_RUNS_PREFIX = f"{RUNS_PREFIX}batch-"
# Who touches which keys of the batch bucket, as DATA_ACCESS does for the batch functions (stacks/constructs/
# batch_workflow.py). The gateway reads what a batch's run wrote (jobs.json, results/, output/, summary.json), lists
# it first (S3 answers a missing key 403 without s3:ListBucket), and writes the cancel marker the run honours.
BATCH_API_ACCESS: dict[str, list[str]] = {
    "read": [f"{OPENAI_PREFIX}*", f"{BATCH_RUNS_PREFIX}*"],
    "write": [f"{OPENAI_PREFIX}*", f"{BATCH_RUNS_PREFIX}*/cancel.json"],
    "list_prefixes": [OPENAI_PREFIX, BATCH_RUNS_PREFIX],
}
# StartExecution names the state machine; DescribeExecution names an execution of it.
START_ACTIONS = ("states:StartExecution",)
DESCRIBE_ACTIONS = ("states:DescribeExecution",)
# A state machine under a customer managed key: of the calls above, only DescribeExecution needs the caller's use of
# the key (kms:Decrypt; StartExecution needs none), which Step Functions makes on the caller's behalf with the state
# machine's ARN as encryption context (docs/bedrock-facts.md, "AWS service facts": Step Functions).
DESCRIBE_KEY_ACTIONS = ("kms:Decrypt",)


@dataclass(frozen=True)
class BatchApiTarget:
    """The batch stack's pieces the gateway's Batch API uses, as the gateway stack imports them (``export_batch_api``
    made the exports): the data bucket's name, the state machine's ARN, the ARN pattern of its executions and, with
    ``kmsKey``, the ARN of the key that encrypts both (None: AWS-managed keys).

    Named exports rather than CDK's automatic ones: the cdk-nag acknowledgements of the wildcard grants below name
    the resources as the synthesized template does, which the automatic export names (hashed) do not allow."""

    bucket_name: str
    state_machine_arn: str
    executions_arn: str  # arn:<partition>:states:<region>:<account>:execution:<state machine name>:*
    key_arn: str | None = None

    @property
    def environment(self) -> dict[str, str]:
        """What the app reads (``lambdas.gateway.config.GatewaySettings``)."""
        return {"GATEWAY_BATCH_BUCKET": self.bucket_name, "GATEWAY_BATCH_STATE_MACHINE_ARN": self.state_machine_arn}


def export_batch_api(
    stack: cdk.Stack, *, bucket: s3.IBucket, state_machine: sfn.StateMachine, encryption_key: kms.IKey | None
) -> BatchApiTarget:
    """Export the batch stack's bucket, state machine and key (names prefixed by the stack's name, so the app deploys
    twice into one account) and return what another stack of the app imports them by."""
    values = {
        "BucketName": bucket.bucket_name,
        "StateMachineArn": state_machine.state_machine_arn,
        # its executions, in the batch stack's own region and account
        "ExecutionsArn": stack.format_arn(
            service="states",
            resource="execution",
            resource_name=f"{state_machine.state_machine_name}:*",
            arn_format=cdk.ArnFormat.COLON_RESOURCE_NAME,
        ),
    }
    if encryption_key is not None:
        values["KeyArn"] = encryption_key.key_arn
    imported: dict[str, str] = {}
    for name, value in values.items():
        export = f"{stack.stack_name}-BatchApi{name}"
        cdk.CfnOutput(stack, f"BatchApi{name}", value=value, export_name=export, description="Used by the gateway")
        imported[name] = cdk.Fn.import_value(export)
    return BatchApiTarget(
        bucket_name=imported["BucketName"],
        state_machine_arn=imported["StateMachineArn"],
        executions_arn=imported["ExecutionsArn"],
        key_arn=imported.get("KeyArn"),
    )


def grant_batch_api(role: iam.IRole, target: BatchApiTarget) -> None:
    """Grant ``role`` (the gateway function's or task's) ``BATCH_API_ACCESS`` on the bucket (and the deletion of its
    own objects under ``openai/``), starting executions of the state machine and describing them, and with a key,
    its use through S3 and (Decrypt) through Step Functions for the executions it describes."""
    stack = cdk.Stack.of(role)
    bucket = s3.Bucket.from_bucket_name(stack, "BatchApiBucket", target.bucket_name)
    grant_objects(bucket, role, **BATCH_API_ACCESS)
    role.add_to_principal_policy(
        iam.PolicyStatement(actions=["s3:DeleteObject"], resources=[bucket.arn_for_objects(f"{OPENAI_PREFIX}*")])
    )
    for pattern in dict.fromkeys(BATCH_API_ACCESS["read"] + BATCH_API_ACCESS["write"]):
        acknowledge_wildcard_resource(
            role,
            bucket.arn_for_objects(pattern),
            f"The Batch API reads or writes {pattern} of the batch bucket only: file and batch ids (and the run "
            "ids made from them) are only known at run time.",
        )
    role.add_to_principal_policy(iam.PolicyStatement(actions=list(START_ACTIONS), resources=[target.state_machine_arn]))
    executions = target.executions_arn
    role.add_to_principal_policy(iam.PolicyStatement(actions=list(DESCRIBE_ACTIONS), resources=[executions]))
    acknowledge_wildcard_resource(
        role,
        executions,
        "The Batch API describes the executions of the batch state machine it starts (one per batch, named by "
        "the batch id, known only at run time), and no other state machine's.",
    )
    if target.key_arn is not None:
        key = kms.Key.from_key_arn(stack, "BatchApiKey", target.key_arn)
        grant_s3_objects_key(key, role)
        # DescribeExecution returns the execution's data, which Step Functions decrypts for the caller: kms:Decrypt,
        # asked by Step Functions in this region (kms:ViaService) in the context of this state machine only.
        role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=list(DESCRIBE_KEY_ACTIONS),
                resources=[target.key_arn],
                conditions={
                    "StringEquals": {
                        "kms:EncryptionContext:aws:states:stateMachineArn": target.state_machine_arn,
                        "kms:ViaService": f"states.{stack.region}.amazonaws.com",
                    }
                },
            )
        )
