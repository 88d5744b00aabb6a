"""The batch workflow: six functions and the Standard state machine that runs them.

```
Preprocess input ─(any error)─> Input rejected (Fail)
  └─> Run jobs: Distributed Map over runs/<run>/jobs.json, MaxConcurrency = maxConcurrentJobs; per job:
        Job on demand? ─(no)─> Submit job ─> Job cancelled? ─(yes)─> Process job results
                      │                                   └(no)─> Wait for job ─> Check job status ─> Job finished?
                      │                                             ─(no)─> Wait for job  └(yes)─> Process job results
                      └(yes)─> Run job on demand ─> On-demand job finished? ─(no)─> Run job on demand
                                                                           └(yes)─> Process job results
        (Submit, Check and Run errors go to Process job results with $.failure; its own errors to Job results
        missing. A cancelled run, runs/<run>/cancel.json: Submit submits nothing, Check stops the job, Run takes no
        more records.)
  └─> Plan resubmission (failed or missing rows worth a retry -> runs/<run>/retry/jobs.json)
  └─> Records to resubmit? ─(yes)─> Rerun failed records: the same per-job chain ("Submit retry job", ...) over
                                    runs/<run>/retry/jobs.json
      (an error planning or rerunning goes on to Finalize run with $.resubmission_error: rows keep their first result)
  └─> Finalize run (merges the resubmitted rows) ─> Every row accounted for? ─> Run succeeded | Rows unaccounted for
```
The payload of every state is a contract with the handlers in ``lambdas/``: the pydantic models of
``lambdas/shared/models.py``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import aws_cdk as cdk
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from lambdas.shared.allocator import FUNCTION_ENVIRONMENT
from prompt_templates import TEMPLATES_FILE_ENV, load_templates_file
from stacks.config import BatchConfig, FunctionConfig, SecurityConfig
from stacks.constructs.batch_network import BatchNetwork
from stacks.constructs.bedrock_batch_role import BedrockBatchRole, model_arns, model_invocation_job_arn
from stacks.constructs.conditions import any_resource_arn, service_for_this_account
from stacks.constructs.data_bucket import INPUTS_PREFIX, RUNS_PREFIX, grant_objects
from stacks.constructs.encryption_key import allow_log_delivery, grant_s3_objects_key
from stacks.constructs.nag import acknowledge, acknowledge_wildcard_resource
from stacks.constructs.python_function import (
    MIN_EPHEMERAL_STORAGE_MB,
    PROJECT_ROOT,
    Packaging,
    PythonFunction,
    retention,
)

LAMBDA_SERVICE_ERRORS = [
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
]
# The AWS services the control-plane (zip) functions call: Submit and Poll, Bedrock's control plane and S3 (the
# run's cancel marker). Their zip bundles the pinned SDK with these services' models (see PythonFunction,
# bundle_aws_sdk).
CONTROL_PLANE_SDK_SERVICES = ("bedrock", "s3")
# Run on demand: Bedrock's runtime (InvokeModel, Converse) and S3.
ON_DEMAND_SDK_SERVICES = ("bedrock-runtime", "s3")
DATA_PLANE_TIMEOUT = cdk.Duration.minutes(15)
CONTROL_PLANE_TIMEOUT = cdk.Duration.minutes(1)
LAMBDA_TASK_ROOT = "/var/task"  # where lambdas/Dockerfile puts the sources (and a prompt_templates_file)

# The job manifests the Distributed Maps read: runs/<run>/jobs.json and runs/<run>/retry/jobs.json.
MANIFEST_KEYS = f"{RUNS_PREFIX}*/jobs.json"
# A run's cancel marker (lambdas/shared/cancel.py): found by listing its key (its presence is the request), never read,
# so the functions that only look for it get no object or key access.
CANCEL_KEYS = f"{RUNS_PREFIX}*/cancel.json"
# A run's records: one Parquet object, or the Parquet files an index lists (records.json, records/<NNNN>.parquet).
RECORDS_KEYS = [f"{RUNS_PREFIX}*/records.parquet", f"{RUNS_PREFIX}*/records.json", f"{RUNS_PREFIX}*/records/*"]
# A prepared run's input as the gateway stores an OpenAI batch (input_format "prepared"; docs/batch/running.md).
PREPARED_INPUTS = "openai/batches/*/prepared.jsonl"
# Who may touch which keys of the data bucket (S3 key patterns of lambdas/shared/layout.py; list_prefixes limit
# s3:ListBucket by s3:prefix). IAM's '*' spans '/': runs/*/output/* also covers the resubmission jobs'
# runs/<run>/retry/output/ (and results/, jobs/, jobs.json the same way).
DATA_ACCESS: dict[str, dict[str, list[str]]] = {
    # Submit and Poll only look for the run's cancel marker (Submit then submits nothing, Poll stops the job).
    "submit": {"read": [], "write": [], "list_prefixes": [CANCEL_KEYS]},
    "poll": {"read": [], "write": [], "list_prefixes": [CANCEL_KEYS]},
    # Run on demand reads the job's input file, what it already wrote for the job and the cancel marker; it writes
    # the job's output as a batch job would (its .jsonl.out and manifest.json.out).
    "on_demand": {
        "read": [f"{RUNS_PREFIX}*/jobs/*", f"{RUNS_PREFIX}*/bedrock-output/*"],
        "write": [f"{RUNS_PREFIX}*/bedrock-output/*"],
        "list_prefixes": [f"{RUNS_PREFIX}*/bedrock-output/", CANCEL_KEYS],
    },
    # Reads the input (an upload under inputs/, a file of an earlier run, e.g. its output, or a prepared batch file)
    # and writes the run's records, job files and manifest.
    "preprocess": {
        "read": [f"{INPUTS_PREFIX}*", f"{RUNS_PREFIX}*", PREPARED_INPUTS],
        "write": [*RECORDS_KEYS, f"{RUNS_PREFIX}*/jobs/*", MANIFEST_KEYS],
        "list_prefixes": [INPUTS_PREFIX, RUNS_PREFIX],
    },
    # Reads the job's rows (records, or a resubmission job's row numbers) and what Bedrock wrote for the job.
    "postprocess": {
        "read": [*RECORDS_KEYS, f"{RUNS_PREFIX}*/retry/rows/*", f"{RUNS_PREFIX}*/bedrock-output/*"],
        "write": [f"{RUNS_PREFIX}*/output/*", f"{RUNS_PREFIX}*/results/*"],
        "list_prefixes": [f"{RUNS_PREFIX}*/bedrock-output/"],
    },
    # Reads the planned jobs (manifest, results, outputs' error codes, input lines of the rows to retry) and the
    # cancel marker (a cancelled run resubmits nothing).
    "resubmit": {
        "read": [
            MANIFEST_KEYS,
            f"{RUNS_PREFIX}*/results/*",
            f"{RUNS_PREFIX}*/output/*",
            f"{RUNS_PREFIX}*/jobs/*",
        ],
        "write": [f"{RUNS_PREFIX}*/retry/*"],
        "list_prefixes": [f"{RUNS_PREFIX}*/results/", CANCEL_KEYS],
    },
    # Finalize reads every job's manifest, result and output, and the resubmission plan; it rewrites the outputs
    # that have resubmitted rows.
    "finalize": {
        "read": [
            MANIFEST_KEYS,
            f"{RUNS_PREFIX}*/results/*",
            f"{RUNS_PREFIX}*/output/*",
            f"{RUNS_PREFIX}*/retry/plan.json",
        ],
        "write": [f"{RUNS_PREFIX}*/summary.json", f"{RUNS_PREFIX}*/output/*"],
        "list_prefixes": [f"{RUNS_PREFIX}*/results/", f"{RUNS_PREFIX}*/retry/"],
    },
}


def states_principal(scope: Construct) -> iam.IPrincipal:
    """Step Functions, for this account's state machines only (cross-service confused deputy prevention, as the Step
    Functions guide recommends for a state machine's role: ``aws:SourceAccount`` and ``ArnLike aws:SourceArn
    arn:<partition>:states:<region>:<account>:stateMachine:*``). The state machine's own ARN cannot be used: its role
    is created before it (a cycle)."""
    state_machines = any_resource_arn(scope, "states", "stateMachine", cdk.ArnFormat.COLON_RESOURCE_NAME)
    return service_for_this_account(scope, "states.amazonaws.com", state_machines)


class BatchWorkflow(Construct):
    """``functions`` (keyed preprocess, submit, poll, postprocess, resubmit, finalize), ``state_machine``,
    ``log_group``, ``bedrock_role`` (the jobs' service role) and ``network`` (a ``BatchNetwork`` made for
    ``existing_vpc``, else None).

    ``bucket`` is the data bucket (any ``s3.IBucket``: a ``DataBucket``'s, or one of your own). Grants the functions
    their Bedrock permissions. With ``bedrock_role`` (as ``BatchInferenceStack`` does) access to the bucket and to that
    role is the caller's (``grant_run_access``); without it the workflow creates the role (``BedrockBatchRole``) and
    grants everything itself, so another app reuses it in one call.
    With ``encryption_key`` (``kmsKey``, or any existing ``kms.IKey``) the log groups and the state machine are
    encrypted with it, and Submit asks Bedrock to encrypt the job output with it (``s3EncryptionKeyId``); the key's
    policy must let CloudWatch Logs and Bedrock use it (``EncryptionKey`` makes such a key). ``security.tags`` go on
    every job, and ``job_subnet_ids``/``job_security_group_ids`` (``batchVpc``) become every job's ``vpcConfig``; or
    pass ``existing_vpc`` (an ``ec2.IVpc`` with a route to S3) and optionally ``vpc_subnets``: the workflow makes the
    jobs' security group and grants its Bedrock role the ENI permissions.
    ``prompt_templates_file``: a JSON file ``{"<prompt_id>": "<template>"}`` inside the project, validated at synth,
    staged into the data-plane image and added to ``prompt_id_to_template`` at run time.
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        bucket: s3.IBucket,
        cfg: BatchConfig,
        function_settings: FunctionConfig,
        bedrock_role: iam.IRole | None = None,
        security: SecurityConfig | None = None,
        encryption_key: kms.IKey | None = None,
        job_subnet_ids: Sequence[str] = (),
        job_security_group_ids: Sequence[str] = (),
        existing_vpc: ec2.IVpc | None = None,
        vpc_subnets: ec2.SubnetSelection | None = None,
        prompt_templates_file: str | Path | None = None,
    ) -> None:
        super().__init__(scope, id_)
        security = security or SecurityConfig()
        if existing_vpc is not None and (job_subnet_ids or job_security_group_ids or bedrock_role is not None):
            raise ValueError(
                "BatchWorkflow takes existing_vpc (it then makes the jobs' security group and its own Bedrock role) "
                "or job_subnet_ids/job_security_group_ids/bedrock_role, not both: drop one of them"
            )
        if bedrock_role is None:
            self.bedrock_role: iam.IRole = BedrockBatchRole(
                self, "BedrockBatchRole", bucket=bucket, cfg=cfg, encryption_key=encryption_key
            ).role
        else:
            self.bedrock_role = bedrock_role
        self.network: BatchNetwork | None = None
        if existing_vpc is not None:
            self.network = BatchNetwork(self, "Network", existing_vpc=existing_vpc, vpc_subnets=vpc_subnets)
            assert isinstance(self.bedrock_role, iam.Role)  # made just above
            self.network.grant_bedrock_jobs(self.bedrock_role, model_invocation_job_arn(self))
            job_subnet_ids = self.network.subnet_ids
            job_security_group_ids = [self.network.security_group.security_group_id]
        templates = _prompt_templates_asset(prompt_templates_file) if prompt_templates_file is not None else None
        environment = {
            "DATA_BUCKET": bucket.bucket_name,
            "BEDROCK_ROLE_ARN": self.bedrock_role.role_arn,
            "JOB_TIMEOUT_HOURS": str(cfg.job_timeout_hours),
            "MAX_RECORDS_PER_JOB": str(cfg.max_records_per_job),
            "ALLOWED_MODEL_IDS": ",".join(cfg.allowed_model_ids),
            # Preprocess caps it by the model's quota of submitted + in-progress jobs; Submit keeps the cap.
            "MAX_CONCURRENT_JOBS": str(cfg.max_concurrent_jobs),
        }

        # Only Submit builds CreateModelInvocationJob. Plain configuration, no secrets: tags and the key ARN.
        submit_environment = dict(environment)
        if security.tags:
            submit_environment["JOB_TAGS"] = json.dumps(dict(security.tags), separators=(",", ":"))
        if encryption_key is not None:
            submit_environment["OUTPUT_KMS_KEY_ID"] = encryption_key.key_arn
        if job_subnet_ids:  # batchVpc: the jobs' vpcConfig
            submit_environment["JOB_SUBNET_IDS"] = cdk.Fn.join(",", list(job_subnet_ids))
            submit_environment["JOB_SECURITY_GROUP_IDS"] = cdk.Fn.join(",", list(job_security_group_ids))
        # The data-plane image (one for the four functions) carries the extra templates file, found at run time by
        # prompt_templates.py through its environment variable.
        data_plane_environment = dict(environment)
        image_build_args: dict[str, str] = {}
        image_files: list[str] = []
        if templates is not None:
            project_path, runtime_path = templates
            data_plane_environment[TEMPLATES_FILE_ENV] = runtime_path
            image_build_args[TEMPLATES_FILE_ENV] = project_path
            image_files.append(project_path)

        def function(
            id_: str,
            name: str,
            *,
            timeout: cdk.Duration,
            data_plane: bool = False,
            sdk_services: tuple[str, ...] = CONTROL_PLANE_SDK_SERVICES,
        ) -> PythonFunction:
            settings = function_settings
            if data_plane:
                packaging, memory_mb, storage_mb = (
                    Packaging.IMAGE,
                    settings.data_plane_memory_mb,
                    settings.data_plane_ephemeral_storage_mb,
                )
            else:
                packaging, memory_mb, storage_mb = (
                    Packaging.ZIP,
                    settings.control_plane_memory_mb,
                    MIN_EPHEMERAL_STORAGE_MB,
                )
            return PythonFunction(
                self,
                id_,
                handler=f"lambdas.{name}.handler.lambda_handler",
                service=f"batch-{name.replace('_', '-')}",
                settings=settings,
                packaging=packaging,
                memory_mb=memory_mb,
                ephemeral_storage_mb=storage_mb,
                timeout=timeout,
                environment=(
                    submit_environment
                    if name == "submit_job"
                    else data_plane_environment
                    if data_plane
                    else environment
                ),
                encryption_key=encryption_key,
                image_build_args=image_build_args if data_plane else None,
                image_files=image_files if data_plane else (),
                bundle_aws_sdk=() if data_plane else sdk_services,
            )

        self.functions = {
            "preprocess": function("Preprocess", "preprocess", data_plane=True, timeout=DATA_PLANE_TIMEOUT),
            "submit": function("SubmitJob", "submit_job", timeout=CONTROL_PLANE_TIMEOUT),
            "poll": function("PollJob", "poll_job", timeout=CONTROL_PLANE_TIMEOUT),
            # Answers a job of fewer records than a batch job takes through the runtime, as long as Lambda allows;
            # the state machine calls it again until the job is done (lambdas/on_demand/logic.py).
            "on_demand": function(
                "RunOnDemand", "on_demand", timeout=DATA_PLANE_TIMEOUT, sdk_services=ON_DEMAND_SDK_SERVICES
            ),
            "postprocess": function("Postprocess", "postprocess", data_plane=True, timeout=DATA_PLANE_TIMEOUT),
            # Plan resubmission and Finalize read and write output Parquet (pyarrow): container images too.
            "resubmit": function("PlanResubmission", "resubmit", data_plane=True, timeout=DATA_PLANE_TIMEOUT),
            "finalize": function("Finalize", "finalize", data_plane=True, timeout=DATA_PLANE_TIMEOUT),
        }
        self.functions["on_demand"].function.add_environment("ON_DEMAND_CONCURRENCY", str(cfg.on_demand_concurrency))
        for key, variables in FUNCTION_ENVIRONMENT.items():  # a function's allocator settings beyond the image's
            for name, value in variables.items():
                self.functions[key].function.add_environment(name, value)
        if cfg.prices:  # cdk.json prices: Finalize's estimated cost uses them over lambdas/shared/prices.json
            self.functions["finalize"].function.add_environment("PRICES", cfg.prices_json())
        self._grant_bedrock(cfg)
        self._grant_service_quotas()

        self.log_group = logs.LogGroup(
            self, "StateMachineLogs", retention=retention(function_settings), encryption_key=encryption_key
        )
        self.state_machine = sfn.StateMachine(
            self,
            "StateMachine",
            role=iam.Role(
                self,
                "StateMachineRole",
                assumed_by=states_principal(self),
                description="Execution role of the batch inference state machine",
            ),
            definition_body=sfn.DefinitionBody.from_chainable(self._definition(bucket, cfg)),
            state_machine_type=sfn.StateMachineType.STANDARD,
            timeout=cdk.Duration.hours(cfg.execution_timeout_hours),
            tracing_enabled=True,
            logs=sfn.LogOptions(destination=self.log_group, level=sfn.LogLevel.ALL, include_execution_data=True),
            encryption_configuration=(
                # The key by ARN: CDK would add an unconditioned delivery.logs statement to a key it sees as created
                # here; allow_log_delivery adds it with the confused-deputy conditions instead.
                sfn.CustomerManagedEncryptionConfiguration(
                    kms.Key.from_key_arn(self, "StateMachineKey", encryption_key.key_arn)
                )
                if encryption_key is not None
                else None
            ),
        )
        if encryption_key is not None:
            allow_log_delivery(encryption_key)
            # The Distributed Map reads runs/<run>/jobs.json (and writes nothing to the bucket).
            grant_s3_objects_key(encryption_key, self.state_machine, write=False)
            self._grant_execution_data_key(encryption_key)
        self._acknowledge_state_machine_grants(bucket)
        if bedrock_role is None:  # the workflow's own role: nobody else will grant the run access
            self.grant_run_access(bucket, encryption_key)

    def grant_run_access(self, bucket: s3.IBucket, encryption_key: kms.IKey | None = None) -> None:
        """Give each data-plane function its key patterns of ``bucket`` (``DATA_ACCESS``; with ``encryption_key``, the
        right to read and write SSE-KMS objects through S3) and Submit ``iam:PassRole`` on ``bedrock_role``, for
        Bedrock only. The workflow calls it when it made its own Bedrock role; a caller that passed ``bedrock_role``
        calls it once."""
        for key, access in DATA_ACCESS.items():
            fn = self.functions[key]
            grant_objects(bucket, fn.role, **access)
            if encryption_key is not None and (access["read"] or access["write"]):  # listing reads no object
                grant_s3_objects_key(encryption_key, fn.role, write=bool(access["write"]))
            for pattern in dict.fromkeys(access["read"] + access["write"]):
                verbs = [verb for kind, verb in (("read", "reads"), ("write", "writes")) if pattern in access[kind]]
                names = (
                    "uploads' names"
                    if pattern.startswith(INPUTS_PREFIX)
                    else "batch ids"
                    if pattern == PREPARED_INPUTS
                    else "run ids"
                )
                acknowledge_wildcard_resource(
                    fn.role,
                    bucket.arn_for_objects(pattern),
                    f"{key} {' and '.join(verbs)} {pattern} of the data bucket only; the {names} are only known "
                    "at run time.",
                )
        # Submit passes the Bedrock role to CreateModelInvocationJob, and may pass it to nothing else.
        self.functions["submit"].role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["iam:PassRole"],
                resources=[self.bedrock_role.role_arn],
                conditions={"StringEquals": {"iam:PassedToService": "bedrock.amazonaws.com"}},
            )
        )

    def _grant_execution_data_key(self, key: kms.IKey) -> None:
        """Let the state machine encrypt and decrypt its execution data with ``key``.

        CDK's own grant conditions on ``...:stateMachine:<physical name>``, which renders as ``...:stateMachine:`` for
        a state machine without a physical name (and this one must have none: rule 13), so it never matches. The
        state machine's ARN cannot be used here either (its role policy would depend on it: a cycle), so the context
        is limited to this account's and region's state machines; the key is this app's alone.
        """
        self.state_machine.add_to_role_policy(
            iam.PolicyStatement(
                actions=["kms:Decrypt", "kms:GenerateDataKey"],
                resources=[key.key_arn],
                conditions={
                    "StringLike": {
                        "kms:EncryptionContext:aws:states:stateMachineArn": cdk.Stack.of(self).format_arn(
                            service="states",
                            resource="stateMachine",
                            resource_name="*",
                            arn_format=cdk.ArnFormat.COLON_RESOURCE_NAME,
                        )
                    }
                },
            )
        )

    def _invoke(
        self, id_: str, key: str, *, result_path: str, payload: sfn.TaskInput | None = None
    ) -> tasks.LambdaInvoke:
        """Invoke a function with the project's conventions: the handler's return value is the result, Lambda
        service errors are retried. ``payload`` defaults to the whole state."""
        task = tasks.LambdaInvoke(
            self,
            id_,
            lambda_function=self.functions[key].function,
            payload=payload,
            payload_response_only=True,
            result_path=result_path,
            retry_on_service_exceptions=False,  # replaced by the retry below, which adds TooManyRequestsException
        )
        task.add_retry(
            errors=LAMBDA_SERVICE_ERRORS,
            interval=cdk.Duration.seconds(2),
            backoff_rate=2,
            max_attempts=6,
            jitter_strategy=sfn.JitterType.FULL,
        )
        return task

    def _definition(self, bucket: s3.IBucket, cfg: BatchConfig) -> sfn.IChainable:
        preprocess = self._invoke(
            "Preprocess input",
            "preprocess",
            payload=sfn.TaskInput.from_object(
                {
                    "input": sfn.JsonPath.entire_payload,
                    "execution_name": sfn.JsonPath.string_at("$$.Execution.Name"),
                    "execution_id": sfn.JsonPath.string_at("$$.Execution.Id"),
                }
            ),
            result_path="$.run",
        )
        preprocess.add_catch(
            sfn.Fail(self, "Input rejected", error_path="$.error.Error", cause_path="$.error.Cause"),
            errors=["States.ALL"],
            result_path="$.error",
        )

        run_jobs = self._jobs_map("Run jobs", bucket, cfg, manifest_key="$.run.manifest_key", label="job")
        plan = self._invoke(
            "Plan resubmission",
            "resubmit",
            payload=sfn.TaskInput.from_object(
                {
                    "run": sfn.JsonPath.object_at("$.run"),
                    "execution_input": sfn.JsonPath.object_at("$$.Execution.Input"),
                }
            ),
            result_path="$.resubmission",
        )
        rerun = self._jobs_map(
            "Rerun failed records", bucket, cfg, manifest_key="$.resubmission.manifest_key", label="retry job"
        )

        finalize = self._invoke(
            "Finalize run",
            "finalize",
            payload=sfn.TaskInput.from_object({"run": sfn.JsonPath.object_at("$.run")}),
            result_path="$.summary",
        )
        complete = (
            sfn.Choice(self, "Every row accounted for?")
            .when(sfn.Condition.boolean_equals("$.summary.complete", True), sfn.Succeed(self, "Run succeeded"))
            .otherwise(sfn.Fail(self, "Rows unaccounted for", error="RowsUnaccounted", cause_path="$.summary.message"))
        )
        finalize.next(complete)
        # Resubmission only improves rows that are already in the output: if planning or rerunning fails, finalize
        # without it (the summary says what was not merged; the error is in $.resubmission_error and the history).
        plan.add_catch(finalize, errors=["States.ALL"], result_path="$.resubmission_error")
        rerun.add_catch(finalize, errors=["States.ALL"], result_path="$.resubmission_error")
        rerun.next(finalize)
        resubmit = (
            sfn.Choice(self, "Records to resubmit?")
            .when(sfn.Condition.number_greater_than("$.resubmission.job_count", 0), rerun)
            .otherwise(finalize)
        )
        return preprocess.next(run_jobs).next(plan).next(resubmit)

    def _jobs_map(
        self, id_: str, bucket: s3.IBucket, cfg: BatchConfig, *, manifest_key: str, label: str
    ) -> sfn.DistributedMap:
        """A Distributed Map over the job manifest at ``manifest_key`` running the per-job chain; its states are named
        after ``label`` ("Submit job", or "Submit retry job" for ``label="retry job"``)."""
        jobs = sfn.DistributedMap(
            self,
            id_,
            item_reader=_RunsJsonItemReader(bucket=bucket, key=sfn.JsonPath.string_at(manifest_key)),
            item_selector={
                "run": sfn.JsonPath.object_at("$.run"),
                "job": sfn.JsonPath.object_at("$$.Map.Item.Value"),
            },
            max_concurrency=cfg.max_concurrent_jobs,
            map_execution_type=sfn.StateMachineType.STANDARD,
            result_path=sfn.JsonPath.DISCARD,
        )
        jobs.item_processor(self._job_chain(cfg, label))
        return jobs

    def _job_chain(self, cfg: BatchConfig, label: str) -> sfn.IChainable:
        """One iteration per job: the state is {"run": {...}, "job": {...}} and each handler returns the next state."""
        title = label[0].upper() + label[1:]
        process = self._invoke(f"Process {label} results", "postprocess", result_path="$")
        process.add_catch(sfn.Pass(self, f"{title} results missing"), errors=["States.ALL"], result_path="$.failure")
        submit = self._invoke(f"Submit {label}", "submit", result_path="$")
        submit.add_retry(
            errors=["ThrottlingException"],
            interval=cdk.Duration.seconds(5),
            backoff_rate=2,
            max_attempts=8,
            jitter_strategy=sfn.JitterType.FULL,
        )
        # A full quota (20 submitted + in-progress jobs per model) frees up only when other jobs end, which can take
        # as long as a job may run: keep trying every <= 15 minutes for the whole job timeout, never give up early.
        submit.add_retry(
            errors=["ServiceQuotaExceededException"],
            interval=cdk.Duration.seconds(60),
            backoff_rate=2,
            max_delay=cdk.Duration.minutes(15),
            max_attempts=cfg.job_timeout_hours * 4 + 6,
            jitter_strategy=sfn.JitterType.FULL,
        )
        submit.add_catch(process, errors=["States.ALL"], result_path="$.failure")
        # A job of fewer records than a batch job takes runs through the runtime, one call of the function per
        # stretch of Lambda's 15 minutes, until it says it is done.
        run_on_demand = self._invoke(f"Run {label} on demand", "on_demand", result_path="$")
        run_on_demand.add_catch(process, errors=["States.ALL"], result_path="$.failure")
        run_on_demand.next(
            sfn.Choice(self, f"On-demand {label} finished?")
            .when(sfn.Condition.boolean_equals("$.terminal", True), process)
            .otherwise(run_on_demand)
        )
        wait = sfn.Wait(
            self, f"Wait for {label}", time=sfn.WaitTime.duration(cdk.Duration.seconds(cfg.poll_interval_seconds))
        )
        check = self._invoke(f"Check {label} status", "poll", result_path="$")
        check.add_retry(
            errors=["ThrottlingException"],
            interval=cdk.Duration.seconds(10),
            backoff_rate=2,
            max_attempts=6,
            jitter_strategy=sfn.JitterType.FULL,
        )
        check.add_catch(process, errors=["States.ALL"], result_path="$.failure")
        finished = (
            sfn.Choice(self, f"{title} finished?")
            .when(sfn.Condition.boolean_equals("$.terminal", True), process)
            .otherwise(wait)
        )
        submitted = (
            sfn.Choice(self, f"{title} cancelled?")
            .when(sfn.Condition.boolean_equals("$.cancelled", True), process)
            .otherwise(wait)
        )
        submit.next(submitted)
        wait.next(check).next(finished)
        on_demand = sfn.Condition.and_(
            sfn.Condition.is_present("$.job.on_demand"), sfn.Condition.boolean_equals("$.job.on_demand", True)
        )
        return sfn.Choice(self, f"{title} on demand?").when(on_demand, run_on_demand).otherwise(submit)

    def _acknowledge_state_machine_grants(self, bucket: s3.IBucket) -> None:
        role = self.state_machine.role
        acknowledge(
            role,
            "AwsSolutions-IAM5[Resource::*]",
            "X-Ray tracing (xray:PutTraceSegments, PutTelemetryRecords, GetSamplingRules, GetSamplingTargets) and "
            "CloudWatch Logs delivery (logs:CreateLogDelivery, DescribeLogGroups, ...) support no resource-level "
            "permissions.",
        )
        for fn in self.functions.values():
            acknowledge_wildcard_resource(
                role,
                f"{fn.function.function_arn}:*",
                "CDK's LambdaInvoke grant also covers versions and aliases of this function (ARN suffix ':*').",
            )
        acknowledge_wildcard_resource(
            role,
            bucket.arn_for_objects(MANIFEST_KEYS),
            "The Distributed Map reads the job manifest runs/<run>/jobs.json of any run; run ids come at run time.",
        )
        # The Distributed Map starts, describes, stops and redrives child executions of this state machine.
        stack = cdk.Stack.of(self)
        name = cdk.Arn.split(self.state_machine.state_machine_arn, cdk.ArnFormat.COLON_RESOURCE_NAME).resource_name
        map_policy = self.state_machine.node.find_child("DistributedMapPolicy")
        for resource_name in (f"{name}:*", f"{name}/*:*"):
            acknowledge_wildcard_resource(
                map_policy,
                stack.format_arn(
                    service="states",
                    resource="execution",
                    resource_name=resource_name,
                    arn_format=cdk.ArnFormat.COLON_RESOURCE_NAME,
                ),
                "Child executions of this state machine's Distributed Map (names generated by Step Functions).",
            )

    def _grant_bedrock(self, cfg: BatchConfig) -> None:
        jobs = model_invocation_job_arn(self)
        submit, poll = self.functions["submit"], self.functions["poll"]
        submit.function.add_to_role_policy(
            iam.PolicyStatement(actions=["bedrock:CreateModelInvocationJob"], resources=[jobs, *model_arns(self, cfg)])
        )
        # The job is created with tags (its run id), which needs tag-on-create permission on the job.
        submit.function.add_to_role_policy(iam.PolicyStatement(actions=["bedrock:TagResource"], resources=[jobs]))
        poll.function.add_to_role_policy(
            iam.PolicyStatement(
                actions=["bedrock:GetModelInvocationJob", "bedrock:StopModelInvocationJob"], resources=[jobs]
            )
        )
        # Run on demand calls InvokeModel and Converse (authorized as bedrock:InvokeModel) on the models a run may use,
        # the same models (and profiles' regions) as the batch role; it never streams.
        on_demand = self.functions["on_demand"]
        on_demand.function.add_to_role_policy(
            iam.PolicyStatement(actions=["bedrock:InvokeModel"], resources=model_arns(self, cfg))
        )
        for fn in (submit, poll):
            acknowledge_wildcard_resource(
                fn.role,
                jobs,
                "Invocation job ids are assigned by Bedrock at submit time; the ARN keeps account and region.",
            )
        # ListModelInvocationJobs has no resource type: it takes '*'. Kept in its own policy so that this finding is
        # acknowledged for this statement alone.
        list_jobs = iam.Policy(
            self,
            "ListJobsPolicy",
            roles=[submit.role],
            statements=[iam.PolicyStatement(actions=["bedrock:ListModelInvocationJobs"], resources=["*"])],
        )
        acknowledge(
            list_jobs,
            "AwsSolutions-IAM5[Resource::*]",
            "bedrock:ListModelInvocationJobs supports no resource-level permissions. Submit lists the model's "
            "submitted and in-progress jobs for its job-slot check (lambdas/submit_job/logic.py); it reads job "
            "metadata only.",
        )

    def _grant_service_quotas(self) -> None:
        """Preprocess reads the model's batch quotas (lambdas/preprocess/quotas.py): these two list actions and nothing
        else. Neither has a resource type, so they take '*'; kept in their own policy so that the finding is
        acknowledged for this statement alone."""
        read_quotas = iam.Policy(
            self,
            "ServiceQuotasPolicy",
            roles=[self.functions["preprocess"].role],
            statements=[
                iam.PolicyStatement(
                    actions=["servicequotas:ListServiceQuotas", "servicequotas:ListAWSDefaultServiceQuotas"],
                    resources=["*"],
                )
            ],
        )
        acknowledge(
            read_quotas,
            "AwsSolutions-IAM5[Resource::*]",
            "servicequotas:ListServiceQuotas and servicequotas:ListAWSDefaultServiceQuotas support no resource-level "
            "permissions (Service Authorization Reference, Service Quotas). Preprocess reads the batch quota values "
            "of service code bedrock; both actions are read-only.",
        )


def _prompt_templates_asset(path: str | Path) -> tuple[str, str]:
    """``(path in the project, path in the image)`` of a prompt templates file, validated now so synth fails early."""
    resolved = (PROJECT_ROOT / path).resolve()  # an absolute path stays as it is
    try:
        relative = resolved.relative_to(PROJECT_ROOT)
    except ValueError:
        raise ValueError(
            f"prompt_templates_file {str(path)!r} must be a file inside the project ({PROJECT_ROOT}): it is staged "
            "into the Lambda image, whose build context is the project"
        ) from None
    if resolved.suffix != ".json" or not resolved.is_file():
        raise ValueError(f"prompt_templates_file {str(path)!r} must be an existing .json file")
    load_templates_file(resolved)  # raises TemplateError (a ValueError) naming the file and the prompt id
    return relative.as_posix(), f"{LAMBDA_TASK_ROOT}/{resolved.name}"


class _RunsJsonItemReader(sfn.S3JsonItemReader):
    """The S3 JSON item reader, granting s3:GetObject on the job manifests ``runs/*/jobs.json`` only (CDK's reader
    grants the whole bucket)."""

    def __init__(self, *, bucket: s3.IBucket, key: str) -> None:
        super().__init__(bucket=bucket, key=key)
        self._runs = bucket.arn_for_objects(MANIFEST_KEYS)

    def provide_policy_statements(self) -> list[iam.PolicyStatement]:
        return [iam.PolicyStatement(actions=["s3:GetObject"], resources=[self._runs])]
