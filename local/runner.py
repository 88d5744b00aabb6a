"""The local runtime: the synthesized state machine, run by moto's Step Functions interpreter on one machine.

What is real: the CloudFormation template our CDK app synthesizes (its state machine definition is executed as is),
our Lambda handlers (dispatched in-process), S3 (moto), and the Bedrock control-plane wire protocol (boto3 talks HTTP
to the emulator in ``local.emulator``). What is local: nothing is deployed, no AWS account is touched.

One function, one environment: each handler runs with the variables of its own function's definition in the
template, plus those Lambda itself sets, and never another function's (``function_environment``), so a variable that
one function's definition lacks fails locally as it would on AWS.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import os
import re
import threading
import traceback
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lambdas.shared.allocator import release_free_memory
from local import moto_patches
from local.executions import StateMachineRuns
from local.memory import (
    HandlerSlots,
    available_memory,
    default_data_plane_slots,
    fix_mmap_threshold,
    limit_malloc_arenas,
)
from local.process import PerThreadEnviron, temporary_environment
from local.synth_process import synth_in_child

REGION = "us-east-1"
ACCOUNT = "123456789012"
LOCAL_BUCKET_SUFFIX = "local"

_LOCAL_ENV = {
    "AWS_ACCESS_KEY_ID": "local",
    "AWS_SECRET_ACCESS_KEY": "local",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_METRICS_DISABLED": "true",
    "POWERTOOLS_LOG_LEVEL": "WARNING",
    "POWERTOOLS_SERVICE_NAME": "local-runtime",
    "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
}


# What the process environment keeps over a function's own value: the local runtime logs quietly.
_LOCAL_OVERRIDES = ("POWERTOOLS_LOG_LEVEL",)
# moto's Step Functions interpreter logs at ERROR every exception raised while it evaluates a state, among them the
# NoSuchJsonPathError it raises and handles itself when a Choice's IsPresent looks for a path that is not there (the
# state machine's "on demand?" choice asks it of every job): a line of noise on the user's console, not a failure. A
# path a state really needs and does not find still fails the execution, which the runtime reports from its history.
MOTO_STATE_LOGGER = "moto.stepfunctions.parser.asl.component.eval_component"


class AbsentPathNoise(logging.Filter):
    """Drops moto's log record of a JSON path found absent (see ``MOTO_STATE_LOGGER``); every other record passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Exception=NoSuchJsonPathError")


def quiet_absent_path_noise() -> None:
    """Installs ``AbsentPathNoise`` on moto's state logger, once however many runtimes start."""
    state_logger = logging.getLogger(MOTO_STATE_LOGGER)
    if not any(isinstance(existing, AbsentPathNoise) for existing in state_logger.filters):
        state_logger.addFilter(AbsentPathNoise())


@dataclass(frozen=True)
class LocalFunction:
    logical_id: str
    name: str
    handler: str
    environment: dict[str, str]  # the Variables of its definition in the template, resolved
    memory_mb: int = 128
    data_plane: bool = False  # packaged as an image: preprocess, postprocess, resubmit, finalize (the data plane)

    @property
    def arn(self) -> str:
        return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{self.name}"


@dataclass
class RuntimeOptions:
    max_concurrent_jobs: int | None = None
    poll_interval_seconds: int = 1
    step_seconds: float = 0.2  # how long the emulator keeps a job in each status
    faults: dict[str, Any] = field(default_factory=dict)  # emulator faults: see local.emulator.faults
    max_active_jobs_per_model: int = 20  # the emulator's quota of submitted + in-progress jobs per model
    # Per-model batch quotas of the emulator (model id -> local.emulator.Quotas). The emulator serves them through
    # Service Quotas as well, so preprocess splits with the same numbers the jobs are validated against.
    model_quotas: dict[str, Any] = field(default_factory=dict)
    # Local-only speed-up: moto sleeps every Retry interval for real (the synthesized ones are 2 s to 15 min), so each
    # Retry's IntervalSeconds and MaxDelaySeconds are capped at this many seconds (1 is the ASL minimum). Error names,
    # MaxAttempts, BackoffRate and JitterStrategy stay as synthesized. None runs the definition unchanged.
    retry_max_seconds: int | None = 1
    # Local-only memory bound: how many data-plane handlers run at once in this process (the others wait their turn);
    # None sizes it from the machine's free memory (local.memory.default_data_plane_slots). Lambda's concurrency on
    # AWS is not affected.
    max_data_plane_handlers: int | None = None


def cap_retry_intervals(definition: str, max_seconds: int) -> str:
    """The state machine definition with every Retry's IntervalSeconds and MaxDelaySeconds at most ``max_seconds``."""
    if max_seconds < 1:
        raise ValueError(f"retry_max_seconds must be >= 1 (the ASL minimum), got {max_seconds}")

    def visit(node: Any) -> None:
        if isinstance(node, dict):
            for retrier in node.get("Retry", []):
                retrier["IntervalSeconds"] = min(int(retrier.get("IntervalSeconds", 1)), max_seconds)
                retrier["MaxDelaySeconds"] = min(int(retrier.get("MaxDelaySeconds", max_seconds)), max_seconds)
            for child in node.values():
                visit(child)
        elif isinstance(node, list):
            for child in node:
                visit(child)

    parsed = json.loads(definition)
    visit(parsed)
    return json.dumps(parsed)


def _bucket_name(logical_id: str) -> str:
    name = re.sub(r"[^a-z0-9-]", "-", logical_id.lower()).strip("-")
    return f"{name[:50]}-{LOCAL_BUCKET_SUFFIX}"


def _resources(template: dict[str, Any]) -> tuple[dict[str, str], dict[tuple[str, str], str]]:
    refs: dict[str, str] = {}
    attributes: dict[tuple[str, str], str] = {}
    for logical_id, resource in template["Resources"].items():
        kind = resource["Type"]
        if kind == "AWS::S3::Bucket":
            name = _bucket_name(logical_id)
            refs[logical_id] = name
            attributes[(logical_id, "Arn")] = f"arn:aws:s3:::{name}"
        elif kind == "AWS::Lambda::Function":
            name = logical_id[:64]
            refs[logical_id] = name
            attributes[(logical_id, "Arn")] = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}"
        elif kind == "AWS::IAM::Role":
            refs[logical_id] = logical_id
            attributes[(logical_id, "Arn")] = f"arn:aws:iam::{ACCOUNT}:role/{logical_id}"
        elif kind == "AWS::Logs::LogGroup":
            refs[logical_id] = logical_id
            attributes[(logical_id, "Arn")] = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{logical_id}:*"
        elif kind == "AWS::StepFunctions::StateMachine":
            arn = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:{logical_id}"
            refs[logical_id] = arn
            attributes[(logical_id, "Arn")] = arn
            attributes[(logical_id, "Name")] = logical_id
        else:
            refs[logical_id] = logical_id
            attributes[(logical_id, "Arn")] = f"arn:aws:local:{REGION}:{ACCOUNT}:{logical_id}"
    return refs, attributes


def _functions(template: dict[str, Any], resolve: Callable[[Any], Any]) -> list[LocalFunction]:
    out = []
    for logical_id, resource in template["Resources"].items():
        if resource["Type"] != "AWS::Lambda::Function":
            continue
        props = resource["Properties"]
        handler = props.get("Handler") or props.get("ImageConfig", {}).get("Command", [None])[0]
        if not handler or not str(handler).startswith("lambdas."):
            continue  # CDK's own helper functions (e.g. auto-delete objects) have no local counterpart
        env = resolve(props.get("Environment", {}).get("Variables", {}))
        memory = int(props.get("MemorySize", 128))  # Lambda's default
        data_plane = props.get("PackageType") == "Image"
        out.append(
            LocalFunction(
                logical_id, logical_id[:64], str(handler), {k: str(v) for k, v in env.items()}, memory, data_plane
            )
        )
    return out


def lambda_variables(function: LocalFunction) -> dict[str, str]:
    """The variables Lambda sets for every function ("Defined runtime environment variables" of the Lambda guide)
    that tell a function about itself. AWS_REGION, AWS_DEFAULT_REGION and the credentials come from the local
    runtime's environment; LAMBDA_TASK_ROOT and AWS_EXECUTION_ENV are left out: they would make the SDKs (the X-Ray
    SDK among them) take this process for a Lambda execution environment."""
    return {
        "_HANDLER": function.handler,
        "AWS_LAMBDA_FUNCTION_NAME": function.name,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(function.memory_mb),
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
    }


def function_environment(
    function: LocalFunction, functions: list[LocalFunction], process: Mapping[str, str]
) -> dict[str, str]:
    """What ``function``'s handler sees as its environment: the process environment without any variable that a
    function of the template defines, then the function's own variables, then what Lambda sets; the local runtime's
    log level stays. A variable only another function defines is absent, as it is in that function on AWS."""
    defined = {name for other in functions for name in other.environment}
    env = {name: value for name, value in process.items() if name not in defined}
    env |= function.environment
    env |= lambda_variables(function)
    env |= {name: process[name] for name in _LOCAL_OVERRIDES if name in process}
    return env


class _FakeContext:
    def __init__(self, function: LocalFunction) -> None:
        self.function_name = function.name
        self.memory_limit_in_mb = function.memory_mb
        self.invoked_function_arn = function.arn
        self.aws_request_id = str(uuid.uuid4())

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 900_000


class InProcessLambdas:
    """Replaces moto's echoing Lambda backend: each invoke calls our handler in this process, in the invoking thread,
    with its own function's environment (``environ.bound``; moto invokes from several threads at once). A data-plane
    handler first takes one of ``slots`` (at most ``slots.size`` run at once; None: no bound), and glibc is asked to
    return the memory it freed when it ends."""

    def __init__(
        self, functions: list[LocalFunction], environ: PerThreadEnviron, slots: HandlerSlots | None = None
    ) -> None:
        self.functions = functions
        self.slots = slots
        self.by_name = {f.name: f for f in functions}
        self.invocations: dict[str, int] = {f.name: 0 for f in functions}
        self.environ = environ
        # (function, variable, reading module) for each variable a handler read that another function defines and
        # its own lacks (found or not, os.environ.get with a default included): see tests/e2e/test_local_environment.py
        self.foreign_reads: set[tuple[str, str, str]] = set()
        self._lock = threading.Lock()
        self._original: Any = None

    def invoke(self, function_name: str, body: Any, response_headers: dict[str, str]) -> bytes:
        function = self.by_name[function_name.rsplit(":", 1)[-1] if ":" in function_name else function_name]
        with self._lock:
            self.invocations[function.name] += 1
        module_name, attr = function.handler.rsplit(".", 1)
        handler = getattr(importlib.import_module(module_name), attr)
        event = json.loads(body) if body else {}
        environment = function_environment(function, self.functions, self.environ.process)
        foreign = {name for other in self.functions for name in other.environment} - set(function.environment)

        def on_miss(name: str, reader: str) -> None:
            if name in foreign:
                with self._lock:
                    self.foreign_reads.add((function.name, name, reader))

        try:
            with self._slot(function), self.environ.bound(environment, on_miss):
                result = handler(event, _FakeContext(function))
        except Exception as exc:  # a Lambda function error, as the real service reports it
            response_headers["x-amz-function-error"] = "Unhandled"
            payload = {
                "errorType": type(exc).__name__,
                "errorMessage": str(exc),
                "stackTrace": traceback.format_exception(exc)[-5:],
            }
            return json.dumps(payload).encode()
        return json.dumps(result).encode()

    @contextmanager
    def _slot(self, function: LocalFunction) -> Iterator[None]:
        if not function.data_plane or self.slots is None:
            yield
            return
        try:
            with self.slots.held():
                yield
        finally:
            release_free_memory()

    @contextmanager
    def installed(self) -> Iterator[None]:
        from moto.awslambda_simple.models import LambdaSimpleBackend

        original = LambdaSimpleBackend.invoke
        runtime = self

        def invoke(
            self: Any, function_name: str, qualifier: Any, body: Any, headers: Any, response_headers: Any
        ) -> Any:
            return runtime.invoke(function_name, body, response_headers)

        LambdaSimpleBackend.invoke = invoke  # type: ignore[method-assign]
        try:
            yield
        finally:
            LambdaSimpleBackend.invoke = original  # type: ignore[method-assign]


class LocalRuntime(StateMachineRuns):
    """Context manager: moto + emulator + the synthesized state machine, ready to start executions."""

    execution_prefix = "local"

    def __init__(self, options: RuntimeOptions | None = None, template: dict[str, Any] | None = None) -> None:
        self.options = options or RuntimeOptions()
        self._template = template

    # -- lifecycle -------------------------------------------------------------------------------------------------
    def __enter__(self) -> LocalRuntime:
        from contextlib import ExitStack

        from local.cfn import LocalResources, resolve

        self._exit = ExitStack()
        try:
            self._exit.enter_context(temporary_environment(_LOCAL_ENV))
            template = self._template or synth_template(self.options)
            self.template = template
            refs, attributes = _resources(template)
            self.resources = LocalResources(refs=refs, attributes=attributes, region=REGION, account=ACCOUNT)

            def res(value: Any) -> Any:
                return resolve(value, self.resources)

            self.functions = _functions(template, res)
            self._start_moto()
            self._start_emulator()
            # Local wiring every function shares (as credentials and the region are on AWS): the emulator's endpoints.
            # Each function's own variables are set only while its handler runs (InProcessLambdas.invoke).
            self._exit.enter_context(
                temporary_environment(
                    {
                        "AWS_ENDPOINT_URL_BEDROCK": self.emulator.endpoint_url,
                        # Run on demand answers small jobs through the runtime (InvokeModel, Converse)
                        "AWS_ENDPOINT_URL_BEDROCK_RUNTIME": self.emulator.endpoint_url,
                        # preprocess reads the model's quotas from the emulator's Service Quotas
                        "AWS_ENDPOINT_URL_SERVICE_QUOTAS": self.emulator.endpoint_url,
                    }
                )
            )
            self.bucket = _data_bucket(self.functions)
            self._exit.callback(_quiet_function_logs())
            self._reset_clients()
            environ = self._exit.enter_context(PerThreadEnviron(os.environ).installed())
            slots = self.options.max_data_plane_handlers or default_data_plane_slots(available_memory())
            self.lambdas = InProcessLambdas(self.functions, environ, HandlerSlots(slots))
            self._exit.enter_context(self.lambdas.installed())
            self._deploy(res)
        except BaseException:
            self._exit.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._exit.close()
        self._reset_clients()

    def _start_moto(self) -> None:
        from moto import mock_aws

        for noisy in ("moto", "botocore.credentials", "werkzeug"):
            logging.getLogger(noisy).setLevel(logging.ERROR)
        quiet_absent_path_noise()
        mock = mock_aws(config={"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}})
        mock.start()
        self._exit.callback(mock.stop)
        self._exit.enter_context(moto_patches.installed())
        limit_malloc_arenas()  # for the threads started from here on (moto's Map iterations, the handlers)
        fix_mmap_threshold()

    def _start_emulator(self) -> None:
        import boto3

        from local.emulator.batch_io import Quotas
        from local.emulator.jobs import EmulatorState
        from local.emulator.server import BedrockEmulator

        state = EmulatorState(
            s3=boto3.client("s3", region_name=REGION),
            region=REGION,
            account_id=ACCOUNT,
            step_seconds=self.options.step_seconds,
            faults=self.options.faults,
            quotas=Quotas(max_active_jobs_per_model=self.options.max_active_jobs_per_model),
            model_quotas=self.options.model_quotas,
        )
        self.emulator = BedrockEmulator(state)
        self.emulator.start()
        self._exit.callback(self.emulator.stop)

    @staticmethod
    def _reset_clients() -> None:
        from lambdas.shared import aws

        aws.reset()

    def _deploy(self, res: Callable[[Any], Any]) -> None:
        import boto3

        self.s3 = boto3.client("s3", region_name=REGION)
        for logical_id, resource in self.template["Resources"].items():
            if resource["Type"] == "AWS::S3::Bucket":
                self.s3.create_bucket(Bucket=self.resources.refs[logical_id])
        iam = boto3.client("iam", region_name=REGION)
        role_arn = iam.create_role(RoleName="local-runtime", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        lam = boto3.client("lambda", region_name=REGION)
        for function in self.functions:
            lam.create_function(
                FunctionName=function.name,
                Runtime="python3.13",
                Role=role_arn,
                Handler=function.handler,
                Code={"ZipFile": _empty_zip()},
                Environment={"Variables": function.environment},
            )
        machines = [
            (lid, r) for lid, r in self.template["Resources"].items() if r["Type"] == "AWS::StepFunctions::StateMachine"
        ]
        if len(machines) != 1:
            raise RuntimeError(f"expected one state machine in the template, found {len(machines)}")
        _logical_id, machine = machines[0]
        definition = res(machine["Properties"]["DefinitionString"])
        substitutions = res(machine["Properties"].get("DefinitionSubstitutions", {}))
        for key, value in substitutions.items():
            definition = definition.replace("${" + key + "}", str(value))
        if self.options.retry_max_seconds is not None:
            definition = cap_retry_intervals(definition, self.options.retry_max_seconds)
        self.definition = definition
        self.sfn = boto3.client("stepfunctions", region_name=REGION)
        self.state_machine_arn = self.sfn.create_state_machine(
            name="BatchInference", definition=definition, roleArn=role_arn, type="STANDARD"
        )["stateMachineArn"]

    def http_endpoint(self) -> str:
        """A moto server in this process, serving this runtime's own S3, Step Functions (and every other service moto
        has) over HTTP, for clients moto's in-process mock cannot serve (the gateway's aiobotocore); started on first
        use, stopped with the runtime. Moto keeps one state per process, so both see the same buckets and
        executions."""
        if getattr(self, "_http_endpoint", None) is None:
            from moto.server import ThreadedMotoServer

            server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
            server.start()
            self._exit.callback(server.stop)
            host, port = server.get_host_and_port()
            self._http_endpoint: str | None = f"http://{host}:{port}"
        assert self._http_endpoint is not None
        return self._http_endpoint

    def job_statuses(self) -> dict[str, int]:
        """Bedrock jobs by status, as the emulator sees them (for progress displays)."""
        counts: dict[str, int] = {}
        for job in self.emulator.jobs():
            counts[job["status"]] = counts.get(job["status"], 0) + 1
        return counts


def _data_bucket(functions: list[LocalFunction]) -> str:
    """The data bucket, as the functions' ``DATA_BUCKET`` names it (one bucket for all)."""
    buckets = {f.environment["DATA_BUCKET"] for f in functions if "DATA_BUCKET" in f.environment}
    if len(buckets) != 1:
        raise RuntimeError(f"expected the functions to name one DATA_BUCKET, found {sorted(buckets)}")
    return buckets.pop()


# A directory where synth_template keeps each context's template, for runs that synthesize the same app many times
# (the test suite sets it for its session); unset, every runtime synthesizes afresh. Nothing invalidates an entry:
# the directory must not outlive the sources it was synthesized from.
SYNTH_CACHE_VARIABLE = "LOCAL_RUNTIME_SYNTH_CACHE"


def synth_template(options: RuntimeOptions) -> dict[str, Any]:
    """Synthesize the batch stack (bundling skipped) with the local runtime's context overrides, in a child process
    whose CDK node process exits with it (``local.synth_process``); or read it from ``SYNTH_CACHE_VARIABLE``'s
    directory when that holds this context's template."""
    context: dict[str, Any] = {"pollIntervalSeconds": options.poll_interval_seconds}
    if options.max_concurrent_jobs is not None:
        context["maxConcurrentJobs"] = options.max_concurrent_jobs
    cache = os.environ.get(SYNTH_CACHE_VARIABLE)
    if not cache:
        return synth_in_child(context)
    key = json.dumps(context, sort_keys=True)
    path = Path(cache) / f"{hashlib.sha256(key.encode()).hexdigest()[:16]}.json"
    if path.exists():
        cached: dict[str, Any] = json.loads(path.read_text())
        return cached
    template = synth_in_child(context)
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
    scratch.write_text(json.dumps(template))
    scratch.replace(path)  # atomic: a concurrent reader sees the whole template or none
    return template


def _quiet_function_logs() -> Callable[[], None]:
    """The handlers' Powertools logger may exist already (imported earlier in this process): apply our level, and
    return what puts the previous level back when the runtime closes."""
    from lambdas.shared.observability import logger

    previous = logger.log_level
    logger.setLevel(os.environ.get("POWERTOOLS_LOG_LEVEL", "WARNING"))
    return lambda: logger.setLevel(previous)


def _empty_zip() -> bytes:
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("README", "handlers are dispatched in-process by local.runner")
    return buffer.getvalue()
