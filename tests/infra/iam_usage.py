"""Which IAM actions each role of a synthesized template is used for, derived from the code, not from a list.

A role's allowed actions come from what assumes it:

- a Lambda function: the boto3 client calls of its code. The handler module (``Handler``, the image's ``Command``, or
  the module ``run.sh`` serves) and every project module it imports, transitively, are parsed; the services are the
  string literals passed to a ``...client(...)`` factory, and each call ``x.<method>(...)`` whose name is an operation
  of one of them (botocore's service model, ``xform_name``) counts as that operation, as do the operation names
  passed to ``get_paginator``/``generate_presigned_url`` and the S3 transfer methods (``S3_TRANSFER``). An operation
  is the IAM action ``<signingName>:<Operation>`` unless ``OPERATION_ACTIONS`` says otherwise; request members the
  call passes (by keyword, or all of them through ``**kwargs``) may add actions (``MEMBER_ACTIONS``). Lambda itself
  uses ``LAMBDA_SERVICE_ACTIONS``. CDK's ``AwsCustomResource`` provider: the SDK calls of the ``Custom::AWS``
  resources of its stack.
- an ECS task role (the Fargate gateway): the code of the module its container's command serves with uvicorn, as for
  the Lambda's ``run.sh``, plus what a CloudWatch agent container of the task does with it (``AGENT_ACTIONS``). The
  task execution role: what ECS does with it (``ECS_EXECUTION_ACTIONS``).
- a state machine: its definition's task resources (optimized and ``aws-sdk`` integrations), Distributed Maps
  (child executions) and item readers, and the logging, tracing and encryption it is configured with.
- a service role: the actions the service documents for it (``SERVICE_ROLE_ACTIONS``).

KMS statements are judged by how they are scoped: ``kms:ViaService`` S3 (Decrypt when the code reads or writes
objects, GenerateDataKey when it writes), ``kms:ViaService`` Secrets Manager (Decrypt when it reads a secret), a
state machine's encryption contexts, or an unconditioned statement on a service role that documents it.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import botocore.session
from botocore import xform_name

from stacks.constructs.invocation_logging import PROVIDER_ID
from stacks.constructs.model_gateway import RUN_SCRIPT
from tests.infra.aws_calls import function_calls
from tests.infra.conftest import flat

PROJECT_ROOT = Path(__file__).resolve().parents[2]

# What Lambda itself does with a function's execution role (Lambda developer guide, "Defining Lambda function
# permissions with an execution role" and "Visualize Lambda function invocations using AWS X-Ray"): it writes the
# function's logs to its log group, and with active tracing sends trace segments and telemetry.
LAMBDA_SERVICE_ACTIONS = {
    "logs:CreateLogStream": "Lambda writes the function's logs (AWSLambdaBasicExecutionRole's actions)",
    "logs:PutLogEvents": "Lambda writes the function's logs (AWSLambdaBasicExecutionRole's actions)",
    "xray:PutTraceSegments": "Tracing.ACTIVE: Lambda sends the trace (AWSXRayDaemonWriteAccess's actions)",
    "xray:PutTelemetryRecords": "Tracing.ACTIVE: Lambda sends the trace (AWSXRayDaemonWriteAccess's actions)",
}
# What ECS does with a task execution role (Amazon ECS developer guide, "Amazon ECS task execution IAM role", the
# actions of AmazonECSTaskExecutionRolePolicy): pull the image from ECR and write the awslogs driver's logs.
ECS_EXECUTION_ACTIONS = {
    "ecr:GetAuthorizationToken": "pulls the container image",
    "ecr:BatchCheckLayerAvailability": "pulls the container image",
    "ecr:GetDownloadUrlForLayer": "pulls the container image",
    "ecr:BatchGetImage": "pulls the container image",
    "logs:CreateLogStream": "awslogs log driver",
    "logs:PutLogEvents": "awslogs log driver",
}
# A CloudWatch agent container (its image) in a task: it writes the EMF records it receives to their log group
AGENT_IMAGE_PREFIX = "public.ecr.aws/cloudwatch-agent/cloudwatch-agent:"
AGENT_ACTIONS = {
    "logs:CreateLogStream": "the CloudWatch agent container writes EMF records",
    "logs:PutLogEvents": "the CloudWatch agent container writes EMF records",
}
# The operations IAM authorizes under another action (Service Authorization Reference; Amazon S3 user guide,
# "Required permissions for Amazon S3 API operations"; Bedrock user guide, "Carry out a conversation with the
# Converse API operations" and Nova Reel's StartAsyncInvoke, which writes the video with the caller's permissions).
OPERATION_ACTIONS: dict[tuple[str, str], tuple[str, ...]] = {
    ("s3", "HeadObject"): ("s3:GetObject",),
    ("s3", "ListObjectsV2"): ("s3:ListBucket",),
    ("s3", "CreateMultipartUpload"): ("s3:PutObject",),
    ("s3", "UploadPart"): ("s3:PutObject",),
    ("s3", "CompleteMultipartUpload"): ("s3:PutObject",),
    ("bedrock-runtime", "Converse"): ("bedrock:InvokeModel",),
    ("bedrock-runtime", "ConverseStream"): ("bedrock:InvokeModelWithResponseStream",),
    ("bedrock-runtime", "StartAsyncInvoke"): ("bedrock:InvokeModel", "s3:PutObject"),
}
# Services whose IAM prefix is not the name they sign requests with (Service Authorization Reference).
IAM_PREFIXES = {"monitoring": "cloudwatch"}
# Request members that need a second action (botocore input shape member -> action; "{prefix}" is the service's):
# a role to pass, tags on create, a guardrail applied by Converse.
MEMBER_ACTIONS = {
    "roleArn": "iam:PassRole",
    "RoleArn": "iam:PassRole",
    "tags": "{prefix}:TagResource",
    "guardrailConfig": "bedrock:ApplyGuardrail",
}
# boto3's S3 transfer methods (boto3 guide, "Uploading files" / "Downloading files": s3transfer) and the operations
# they may call: multipart above the threshold, aborted on failure.
_UPLOAD = ("PutObject", "CreateMultipartUpload", "UploadPart", "CompleteMultipartUpload", "AbortMultipartUpload")
_DOWNLOAD = ("HeadObject", "GetObject")
S3_TRANSFER = {
    "upload_file": _UPLOAD,
    "upload_fileobj": _UPLOAD,
    "download_file": _DOWNLOAD,
    "download_fileobj": _DOWNLOAD,
}
# Methods whose first argument (or ClientMethod/operation_name keyword) names the operation they stand for.
OPERATION_BY_NAME = {"get_paginator", "generate_presigned_url", "can_paginate"}

# Service roles: what the service does with them, per its documentation. Keyed by the trusted principal and a
# fragment of the aws:SourceArn it is limited to.
SERVICE_ROLE_ACTIONS: dict[tuple[str, str], dict[str, str]] = {
    # Bedrock user guide, "Create a custom service role for batch inference" (S3 and the models, inference profiles
    # routing to foundation models in other regions) and "Protect batch inference jobs using a VPC" (ENIs).
    ("bedrock.amazonaws.com", ":model-invocation-job/"): {
        "s3:GetObject": "reads the job input",
        "s3:ListBucket": "lists the job input",
        "s3:PutObject": "writes the job output",
        "bedrock:InvokeModel": "invokes the job's model",
        "kms:Decrypt": "reads SSE-KMS input, writes SSE-KMS output (kmsKey)",
        "kms:GenerateDataKey": "writes SSE-KMS output (kmsKey)",
        "ec2:DescribeNetworkInterfaces": "batchVpc",
        "ec2:DescribeVpcs": "batchVpc",
        "ec2:DescribeDhcpOptions": "batchVpc",
        "ec2:DescribeSubnets": "batchVpc",
        "ec2:DescribeSecurityGroups": "batchVpc",
        "ec2:CreateNetworkInterface": "batchVpc",
        "ec2:CreateNetworkInterfacePermission": "batchVpc",
        "ec2:DeleteNetworkInterface": "batchVpc",
        "ec2:DeleteNetworkInterfacePermission": "batchVpc",
        "ec2:CreateTags": "batchVpc",
    },
    # Bedrock user guide, "Monitor model invocation using CloudWatch Logs": the role writes the log streams.
    ("bedrock.amazonaws.com", ":bedrock:"): {
        "logs:CreateLogStream": "model invocation logging",
        "logs:PutLogEvents": "model invocation logging",
    },
    # Amazon VPC user guide, "IAM role for publishing flow logs to CloudWatch Logs".
    ("vpc-flow-logs.amazonaws.com", ":vpc-flow-log/"): {
        "logs:CreateLogStream": "flow logs",
        "logs:PutLogEvents": "flow logs",
        "logs:DescribeLogStreams": "flow logs",
    },
}
# Roles whose permissions are an AWS managed policy only (acknowledged to cdk-nag next to them).
MANAGED_ONLY = {"apigateway.amazonaws.com": "AmazonAPIGatewayPushToCloudWatchLogs"}

# Step Functions developer guide: "Using CloudWatch Logs to log execution history in Step Functions" (the log
# delivery actions), "Trace Step Functions request data in AWS X-Ray", "IAM policies for using Distributed Map
# states", "Data at rest encryption in Step Functions".
STATES_LOGGING_ACTIONS = {
    "logs:CreateLogDelivery",
    "logs:GetLogDelivery",
    "logs:UpdateLogDelivery",
    "logs:DeleteLogDelivery",
    "logs:ListLogDeliveries",
    "logs:PutResourcePolicy",
    "logs:DescribeResourcePolicies",
    "logs:DescribeLogGroups",
}
STATES_TRACING_ACTIONS = {
    "xray:PutTraceSegments",
    "xray:PutTelemetryRecords",
    "xray:GetSamplingRules",
    "xray:GetSamplingTargets",
}
DISTRIBUTED_MAP_ACTIONS = {
    "states:StartExecution",
    "states:DescribeExecution",
    "states:StopExecution",
    "states:RedriveExecution",
}
# Optimized integrations (arn:<partition>:states:::<service>:<api>): the IAM actions each needs.
OPTIMIZED_INTEGRATIONS = {"lambda:invoke": ("lambda:InvokeFunction",), "s3:getObject": ("s3:GetObject",)}


@dataclass(frozen=True)
class Use:
    """What a role may do: ``actions`` (IAM action -> why) and the KMS uses (``(action, scope)``: scope is
    ``via:<service>``, ``states``, ``logs-delivery`` or ``direct``)."""

    actions: Mapping[str, str]
    kms: frozenset[tuple[str, str]] = field(default_factory=frozenset)


# --- code ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Call:
    method: str
    keywords: frozenset[str]
    spread: bool  # **kwargs: any member may be passed
    operation_name: str | None  # the first argument of get_paginator / generate_presigned_url


def module_closure(module: str) -> list[Path]:
    """The source files of ``module`` and of every project module it imports, transitively."""
    seen: dict[str, Path] = {}
    todo = [module]
    while todo:
        name = todo.pop()
        path = _module_path(name)
        if name in seen or path is None:
            continue
        seen[name] = path
        tree = ast.parse(path.read_text(), filename=str(path))
        todo.extend(_imported(tree, name, path.name == "__init__.py"))
    return list(seen.values())


def _module_path(name: str) -> Path | None:
    base = PROJECT_ROOT.joinpath(*name.split("."))
    for path in (base / "__init__.py", base.with_suffix(".py")):
        if path.is_file():
            return path
    return None


def _imported(tree: ast.AST, module: str, package: bool) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = ""
            if node.level:  # relative: from the module's package, one level up per extra dot
                parts = module.split(".") if package else module.split(".")[:-1]
                base = ".".join(parts[: len(parts) - node.level + 1])
            target = ".".join(p for p in (base, node.module or "") if p)
            names.add(target)
            names.update(f"{target}.{alias.name}" for alias in node.names)
    with_parents = set(names)
    for name in names:
        parts = name.split(".")
        with_parents.update(".".join(parts[:i]) for i in range(1, len(parts)))
    return with_parents


def _calls(files: Iterable[Path]) -> tuple[set[str], list[_Call]]:
    """The client services named in ``files`` and every method call in them."""
    services: set[str] = set()
    calls: list[_Call] = []
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            first = node.args[0] if node.args else None
            literal = first.value if isinstance(first, ast.Constant) and isinstance(first.value, str) else None
            if name.endswith("client") and literal is not None:
                services.add(literal)
            if isinstance(func, ast.Attribute):
                keywords = frozenset(k.arg for k in node.keywords if k.arg is not None)
                spread = any(k.arg is None for k in node.keywords)
                named = literal if name in OPERATION_BY_NAME else None
                calls.append(_Call(name, keywords, spread, named))
    return services, calls


@cache
def _service_model(service: str) -> Any:
    return botocore.session.get_session().get_service_model(service)


def operation_actions(service: str, operation: str, *, passed: Collection[str] | None = None) -> dict[str, str]:
    """The IAM actions of calling ``operation`` of ``service`` with the request members ``passed`` (None: any)."""
    model = _service_model(service)
    signing = model.metadata.get("signingName") or model.metadata["endpointPrefix"]
    prefix = IAM_PREFIXES.get(signing, signing)
    why = f"{service} {operation}"
    actions = dict.fromkeys(OPERATION_ACTIONS.get((service, operation), (f"{prefix}:{operation}",)), why)
    input_shape = model.operation_model(operation).input_shape
    for top, shape in input_shape.members.items() if input_shape is not None else ():
        if passed is not None and top not in passed:
            continue
        for member in {top} | _nested_members(shape):
            if member in MEMBER_ACTIONS:
                actions[MEMBER_ACTIONS[member].format(prefix=prefix)] = f"{why} with {member}"
    return actions


def _nested_members(shape: Any, depth: int = 4) -> set[str]:
    """The member names inside a structure shape (and its lists and maps), a few levels deep."""
    if depth == 0:
        return set()
    if shape.type_name == "structure":
        return {name for name, inner in shape.members.items() for name in {name} | _nested_members(inner, depth - 1)}
    if shape.type_name == "list":
        return _nested_members(shape.member, depth - 1)
    return set()


def code_actions(module: str) -> dict[str, str]:
    """The IAM actions the code of ``module`` (and what it imports) calls, each with the call that needs it."""
    return dict(_code_actions(module))


@cache
def _code_actions(module: str) -> dict[str, str]:
    """``code_actions``, scanned once per module for the run (the source does not change while the tests run; a
    scan of the gateway's code takes seconds, and each check of each synthesized app asks for every role's)."""
    services, calls = _calls(module_closure(module))
    available = set(botocore.session.get_session().get_available_services())
    unknown = services - available
    assert not unknown, f"{module}: clients of unknown services {sorted(unknown)}"
    by_method: dict[str, list[tuple[str, str]]] = {}
    for service in services:
        for operation in _service_model(service).operation_names:
            by_method.setdefault(xform_name(operation), []).append((service, operation))
    actions: dict[str, str] = {}
    spelled = _spelled_out_members(module)
    for call in calls:
        if call.method in S3_TRANSFER and "s3" in services:
            for operation in S3_TRANSFER[call.method]:
                actions.update(operation_actions("s3", operation, passed=()))
        method = call.operation_name or call.method
        for service, operation in by_method.get(method, []):
            passed: Collection[str] | None = None if call.operation_name else call.keywords
            if call.spread:  # **request: the members the source analysis read, when it read them all
                passed = spelled.get((service, operation))
            actions.update(operation_actions(service, operation, passed=passed))
    return actions


def _spelled_out_members(module: str) -> dict[tuple[str, str], frozenset[str]]:
    """The request members of each operation ``module``'s code calls, where ``tests/infra/aws_calls.py`` reads every
    call of it in full (a ``**request`` built in the calling function or returned by a project function); the
    operations it cannot read whole are left out (any member may then be passed)."""
    found: dict[tuple[str, str], list[Any]] = {}
    for call in function_calls(module):
        found.setdefault((call.service, call.operation), []).append(call)
    return {
        operation: frozenset(path[0] for call in calls for path in call.params)
        for operation, calls in found.items()
        if all(call.params_known for call in calls)
    }


def _kms_for_code(actions: Mapping[str, str]) -> set[tuple[str, str]]:
    """KMS through S3, Secrets Manager and DynamoDB: what SSE-KMS objects and secrets need (S3 user guide, "Using
    server-side encryption with AWS KMS keys"; Secrets Manager user guide, "Secret encryption and decryption"), and
    what a caller of a table under a customer managed key is given (docs/bedrock-facts.md, team keys)."""
    uses: set[tuple[str, str]] = set()
    if {"s3:GetObject", "s3:PutObject"} & set(actions):
        uses.add(("kms:Decrypt", "via:s3"))
    if "s3:PutObject" in actions:
        uses.add(("kms:GenerateDataKey", "via:s3"))
    if "secretsmanager:GetSecretValue" in actions:
        uses.add(("kms:Decrypt", "via:secretsmanager"))
    if any(action.startswith("dynamodb:") for action in actions):  # a table under a customer managed key
        uses.add(("kms:Decrypt", "via:dynamodb"))
    # A state machine under a customer managed key (Step Functions developer guide, "Data at rest encryption",
    # "Required permissions for API callers"): StartExecution needs nothing of its caller, DescribeExecution needs
    # kms:Decrypt, which Step Functions asks for on the caller's behalf (kms:ViaService states).
    if "states:DescribeExecution" in actions:
        uses.add(("kms:Decrypt", "via:states"))
    return uses


# --- template -----------------------------------------------------------------------------------------------------


def _role_id(node: Any) -> str | None:
    if isinstance(node, dict) and "Fn::GetAtt" in node:
        return str(node["Fn::GetAtt"][0])
    return None


def _function_module(props: Mapping[str, Any]) -> str:
    handler = props.get("Handler") or props["ImageConfig"]["Command"][0]
    if handler.endswith(".sh"):  # the gateway's run.sh (RUN_SCRIPT) serves a module with uvicorn
        match = re.search(r"(lambdas(?:\.\w+)+):\w+", (PROJECT_ROOT / RUN_SCRIPT).read_text())
        assert match, f"{RUN_SCRIPT} serves no lambdas module"
        return match.group(1)
    return str(handler).rsplit(".", 1)[0]


def _served_module(command: list[Any]) -> str:
    """The module a container's command serves with uvicorn (``... lambdas.gateway.app:app``)."""
    matches = [m.group(1) for part in command if (m := re.fullmatch(r"(lambdas(?:\.\w+)+):\w+", str(part)))]
    assert len(matches) == 1, f"the container command {command} serves no single lambdas module"
    return matches[0]


def task_role_modules(resources: Mapping[str, Any]) -> dict[str, str]:
    """The task role of each ECS task definition with the module its containers serve (logical ids)."""
    found: dict[str, str] = {}
    for props in (r["Properties"] for r in resources.values() if r["Type"] == "AWS::ECS::TaskDefinition"):
        role = _role_id(props.get("TaskRoleArn"))
        if role is None:
            continue
        apps = [c for c in props["ContainerDefinitions"] if not _is_agent(c)]
        (module,) = {_served_module(c.get("Command", [])) for c in apps}
        found[role] = module
    return found


def _is_agent(container: Mapping[str, Any]) -> bool:
    return str(container.get("Image", "")).startswith(AGENT_IMAGE_PREFIX)


def _task_roles_with_agent(resources: Mapping[str, Any]) -> set[str]:
    """The task roles of task definitions that run a CloudWatch agent container."""
    return {
        role
        for props in (r["Properties"] for r in resources.values() if r["Type"] == "AWS::ECS::TaskDefinition")
        if any(_is_agent(c) for c in props["ContainerDefinitions"])
        and (role := _role_id(props.get("TaskRoleArn"))) is not None
    }


def _execution_roles(resources: Mapping[str, Any]) -> set[str]:
    return {
        role
        for r in resources.values()
        if r["Type"] == "AWS::ECS::TaskDefinition" and (role := _role_id(r["Properties"].get("ExecutionRoleArn")))
    }


def _sdk_calls(resources: Mapping[str, Any]) -> dict[str, str]:
    """The actions of the stack's AwsCustomResource calls (Custom::AWS Create/Update/Delete)."""
    actions: dict[str, str] = {}
    for resource in resources.values():
        if resource["Type"] != "Custom::AWS":
            continue
        for phase in ("Create", "Update", "Delete"):
            if phase not in resource["Properties"]:
                continue
            call = json.loads(flat(resource["Properties"][phase]))
            service = call["service"].removeprefix("@aws-sdk/client-")
            actions.update(operation_actions(service, call["action"], passed=_keys(call.get("parameters", {}))))
    return actions


def _keys(node: Any) -> set[str]:
    if isinstance(node, dict):
        return set(node) | {k for value in node.values() for k in _keys(value)}
    if isinstance(node, list):
        return {k for value in node for k in _keys(value)}
    return set()


def _states(definition: Mapping[str, Any]) -> Iterable[Mapping[str, Any]]:
    for state in definition.get("States", {}).values():
        yield state
        for inner in (state.get("ItemProcessor"), state.get("Iterator"), *state.get("Branches", [])):
            if inner:
                yield from _states(inner)


def _state_machine_use(props: Mapping[str, Any], functions: set[str]) -> Use:
    """``functions``: the logical ids of the template's Lambda functions (a task may name one by its ARN)."""
    definition = json.loads(flat(props["DefinitionString"]))
    actions: dict[str, str] = {}
    for state in _states(definition):
        resources = [state.get("Resource", ""), state.get("ItemReader", {}).get("Resource", "")]
        for resource in filter(None, resources):
            integration = resource.split(":::", 1)[-1].split(".")[0]  # lambda:invoke, aws-sdk:bedrock:getX, ...
            if ":::" not in resource:  # a function's own ARN: the Lambda task (payload_response_only)
                assert resource.removeprefix("<").split(".")[0] in functions, f"task resource {resource}"
                actions["lambda:InvokeFunction"] = f"task {resource}"
            elif integration.startswith("aws-sdk:"):
                _, service, api = integration.split(":")
                actions[f"{service}:{api[0].upper()}{api[1:]}"] = f"task {resource}"
            else:
                actions.update(dict.fromkeys(OPTIMIZED_INTEGRATIONS[integration], f"task {resource}"))
        if state.get("ItemProcessor", {}).get("ProcessorConfig", {}).get("Mode") == "DISTRIBUTED":
            actions.update(dict.fromkeys(DISTRIBUTED_MAP_ACTIONS, "Distributed Map child executions"))
    if props.get("LoggingConfiguration"):
        actions.update(dict.fromkeys(STATES_LOGGING_ACTIONS, "execution logs to CloudWatch Logs"))
    if props.get("TracingConfiguration", {}).get("Enabled"):
        actions.update(dict.fromkeys(STATES_TRACING_ACTIONS, "X-Ray tracing"))
    kms = _kms_for_code(actions)
    if props.get("EncryptionConfiguration", {}).get("Type") == "CUSTOMER_MANAGED_KMS_KEY":
        kms |= {("kms:Decrypt", "states"), ("kms:GenerateDataKey", "states")}
        if props.get("LoggingConfiguration"):
            kms.add(("kms:GenerateDataKey", "logs-delivery"))
    return Use(actions, frozenset(kms))


def role_uses(template: Mapping[str, Any]) -> dict[str, Use]:
    """Every role of ``template`` (logical id) with what it is used for; a role of unknown use fails."""
    resources = template["Resources"]
    uses: dict[str, Use] = {}
    for props in (r["Properties"] for r in resources.values() if r["Type"] == "AWS::Lambda::Function"):
        role = _role_id(props["Role"])
        assert role is not None
        if role.startswith(PROVIDER_ID):
            uses[role] = Use(_sdk_calls(resources))
            continue
        actions = {**code_actions(_function_module(props)), **LAMBDA_SERVICE_ACTIONS}
        uses[role] = Use(actions, frozenset(_kms_for_code(actions)))
    agents = _task_roles_with_agent(resources)
    for role, module in task_role_modules(resources).items():
        actions = code_actions(module)  # the task runs no Lambda service: no logs or X-Ray of its own
        uses[role] = Use({**actions, **(AGENT_ACTIONS if role in agents else {})}, frozenset(_kms_for_code(actions)))
    for role in _execution_roles(resources):
        uses[role] = Use(ECS_EXECUTION_ACTIONS)
    for props in (r["Properties"] for r in resources.values() if r["Type"] == "AWS::StepFunctions::StateMachine"):
        role = _role_id(props["RoleArn"])
        assert role is not None
        functions = {lid for lid, r in resources.items() if r["Type"] == "AWS::Lambda::Function"}
        uses[role] = _state_machine_use(props, functions)
    for role, resource in resources.items():
        if resource["Type"] != "AWS::IAM::Role" or role in uses:
            continue
        (trust,) = resource["Properties"]["AssumeRolePolicyDocument"]["Statement"]
        service = trust["Principal"]["Service"]
        source = flat(trust.get("Condition", {}).get("ArnLike", {}).get("aws:SourceArn", ""))
        matches = [a for (s, fragment), a in SERVICE_ROLE_ACTIONS.items() if s == service and fragment in source]
        if matches:
            documented = matches[0]
            kms = {(a, "direct") for a in documented if a.startswith("kms:")}
            uses[role] = Use({a: w for a, w in documented.items() if not a.startswith("kms:")}, frozenset(kms))
        elif service in MANAGED_ONLY:
            uses[role] = Use({})
        else:
            raise AssertionError(f"role {role} (trusting {service}) has no known use: add it to iam_usage.py")
    return uses


def _kms_scope(statement: Mapping[str, Any]) -> str:
    conditions = {key: value for block in statement.get("Condition", {}).values() for key, value in block.items()}
    if "kms:ViaService" in conditions:
        return "via:" + flat(conditions["kms:ViaService"]).split(".", 1)[0]
    if "kms:EncryptionContext:aws:states:stateMachineArn" in conditions:
        return "states"
    if ":logs:" in flat(conditions.get("kms:EncryptionContext:SourceArn", "")):
        return "logs-delivery"
    return "direct" if not conditions else "unknown"


def role_statements(template: Mapping[str, Any]) -> dict[str, list[Mapping[str, Any]]]:
    """Every Allow statement of every role, from its AWS::IAM::Policy resources and inline policies."""
    resources = template["Resources"]
    found: dict[str, list[Mapping[str, Any]]] = {}
    for role, resource in resources.items():
        if resource["Type"] == "AWS::IAM::Role":
            inline = resource["Properties"].get("Policies", [])
            found[role] = [s for p in inline for s in p["PolicyDocument"]["Statement"]]
    for resource in resources.values():  # CDK moves what does not fit a role's policy into managed "overflow" ones
        if resource["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            for ref in resource["Properties"].get("Roles", []):
                found.setdefault(ref["Ref"], []).extend(resource["Properties"]["PolicyDocument"]["Statement"])
    return {role: [s for s in statements if s["Effect"] == "Allow"] for role, statements in found.items()}


def unused_grants(template: Mapping[str, Any]) -> list[str]:
    """Each granted action no code, definition or documented service use of its role needs: "<role>: <action>"."""
    uses = role_uses(template)
    unused: list[str] = []
    for role, statements in role_statements(template).items():
        use = uses[role]
        for statement in statements:
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            for action in actions:
                if action.startswith("kms:"):
                    scope = _kms_scope(statement)
                    if (action, scope) not in use.kms:
                        unused.append(f"{role}: {action} ({scope})")
                elif action not in use.actions:
                    unused.append(f"{role}: {action}")
    return unused


def _code_roles(resources: Mapping[str, Any]) -> dict[str, str]:
    """The roles whose use is their code's (functions, but CDK's custom resource provider, and ECS task roles), with
    the module their code starts from."""
    served = {
        role: _function_module(props)
        for props in (r["Properties"] for r in resources.values() if r["Type"] == "AWS::Lambda::Function")
        if (role := _role_id(props["Role"])) is not None and not role.startswith(PROVIDER_ID)
    }
    return {**served, **task_role_modules(resources)}


def ungranted_calls(template: Mapping[str, Any]) -> list[str]:
    """Each action a function's code calls that its role is not granted at all: "<role>: <action> (<why>)"."""
    statements = role_statements(template)
    missing: list[str] = []
    for role, module in _code_roles(template["Resources"]).items():
        granted = {
            action
            for statement in statements.get(role, [])
            for action in (statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]])
        }
        for action, why in code_actions(module).items():
            if action not in granted:
                missing.append(f"{role}: {action} ({why})")
    return missing


def ungranted_key_uses(template: Mapping[str, Any]) -> list[str]:
    """Each use of the customer managed key a function's or task's code needs (``_kms_for_code``: through S3, Secrets
    Manager, DynamoDB, Step Functions) that its role is not granted with that scope: "<role>: <action> (<scope>)".
    Meaningful for a template synthesized with ``kmsKey``, where every bucket, secret, table and state machine the
    code touches is under the key."""
    statements = role_statements(template)
    missing: list[str] = []
    for role, module in _code_roles(template["Resources"]).items():
        granted = {
            (action, _kms_scope(statement))
            for statement in statements.get(role, [])
            for action in (statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]])
            if action.startswith("kms:")
        }
        missing += [
            f"{role}: {action} ({scope})" for action, scope in sorted(_kms_for_code(code_actions(module)) - granted)
        ]
    return missing
