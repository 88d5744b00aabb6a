"""The one function factory: every Lambda of the project is a ``PythonFunction``.

It fixes what all functions share: the Python runtime, JSON logs into an explicit log group with retention, active
X-Ray tracing, the Powertools settings and a role of its own. Two kinds of code:

- ``Packaging.ZIP`` (control plane): a zip asset bundled without Docker (see ``local_bundling.py``) from
  ``requirements-lambda.txt``, ``lambdas/`` and ``prompt_templates.py``. A zip function that calls AWS names the
  services it calls (``bundle_aws_sdk``) and gets the pinned boto3/botocore of its requirements file with those
  services' models: the runtime's own SDK depends on the runtime version and region, and an older one lacks what
  the code sends (``modelInvocationType`` of CreateModelInvocationJob). The Lambda guide recommends packaging the
  SDK for production; the deployment package comes first on the runtime's search path.
- ``Packaging.IMAGE`` (data plane, whose ``datasets`` + ``pyarrow`` exceed the 250 MB zip limit): a container image
  built from ``lambdas/Dockerfile``. Synth only stages the build context; ``cdk deploy`` builds the image (Docker).

Both stage the sources at the asset root, so handler strings read ``lambdas.submit_job.handler.lambda_handler``.
A zip function may bring its own requirements file, extra files (the gateway's ``run.sh``) and layers (the gateway
runs FastAPI under the Lambda Web Adapter layer, with aiobotocore's pinned botocore).
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from stacks.config import LOG_RETENTION_DAYS, FunctionConfig
from stacks.constructs.local_bundling import PipLocalBundling
from stacks.constructs.nag import acknowledge

PROJECT_ROOT = Path(__file__).resolve().parents[2]
# Allow-list for both asset kinds (Docker ignore syntax): only the handler sources and the Lambda requirements, never
# .venv, node_modules, cdk.out, tests or .git. It keeps the image build context and the source fingerprint small.
ASSET_EXCLUDE = (
    "*",
    "!lambdas",
    "!prompt_templates.py",
    "!requirements-lambda.txt",
    "!requirements-lambda-data.txt",
    "**/__pycache__",
    "**/*.pyc",
)


MIN_EPHEMERAL_STORAGE_MB = 512  # what Lambda gives when nothing is asked for
ZIP_REQUIREMENTS_FILE = "requirements-lambda.txt"  # the control-plane functions' dependencies


def retention(settings: FunctionConfig) -> logs.RetentionDays:
    """The log retention of ``logRetentionDays`` as CDK's enum (config holds the day count)."""
    return logs.RetentionDays[LOG_RETENTION_DAYS[settings.log_retention_days]]


class Packaging(enum.Enum):
    ZIP = "zip"
    IMAGE = "image"


class PythonFunction(Construct):
    """A Lambda function with its role (``role``), log group (``log_group``) and the function itself (``function``);
    also what it was made from: ``handler``, ``packaging``, ``aws_sdk_services`` (``bundle_aws_sdk``) and, for a
    zip, its ``bundling`` (the local bundler CDK calls)."""

    RUNTIME = lambda_.Runtime.PYTHON_3_13  # lambdas/Dockerfile uses the same version: public.ecr.aws/lambda/python:3.13
    ARCHITECTURES = {"arm64": lambda_.Architecture.ARM_64, "x86_64": lambda_.Architecture.X86_64}
    IMAGE_PLATFORMS = {"arm64": ecr_assets.Platform.LINUX_ARM64, "x86_64": ecr_assets.Platform.LINUX_AMD64}
    BUNDLING_PLATFORMS = {"arm64": "linux/arm64", "x86_64": "linux/amd64"}
    METRICS_NAMESPACE = "BedrockBatch"
    LOG_LEVEL = "INFO"
    ZIP_REQUIREMENTS = ZIP_REQUIREMENTS_FILE
    DOCKERFILE = "lambdas/Dockerfile"

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        handler: str,
        service: str,
        settings: FunctionConfig,
        memory_mb: int,
        timeout: cdk.Duration,
        packaging: Packaging = Packaging.ZIP,
        ephemeral_storage_mb: int = MIN_EPHEMERAL_STORAGE_MB,
        environment: Mapping[str, str] | None = None,
        requirements: str = ZIP_REQUIREMENTS_FILE,
        extra_files: Mapping[str, str] | None = None,
        bundle_aws_sdk: tuple[str, ...] = (),
        layers: Sequence[lambda_.ILayerVersion] = (),
        encryption_key: kms.IKey | None = None,
        metrics_namespace: str | None = None,
        image_build_args: Mapping[str, str] | None = None,
        image_files: Sequence[str] = (),
    ) -> None:
        """``requirements``, ``extra_files`` (asset path -> project path) and ``bundle_aws_sdk`` apply to
        ``Packaging.ZIP`` only (see ``PipLocalBundling``). ``encryption_key`` (``kmsKey``) encrypts the log group.
        ``metrics_namespace`` replaces the default ``METRICS_NAMESPACE`` for this function (and its dashboards).
        ``image_build_args`` (Docker ``ARG``s of ``lambdas/Dockerfile``) and ``image_files`` (project paths added to the
        image build context) apply to ``Packaging.IMAGE`` only."""
        super().__init__(scope, id_)
        self.handler, self.packaging, self.aws_sdk_services = handler, packaging, bundle_aws_sdk
        self.bundling: PipLocalBundling | None = None  # the zip's bundler (tests run it with a fake pip)
        if metrics_namespace is not None:
            self.METRICS_NAMESPACE = metrics_namespace
        if packaging is Packaging.IMAGE and (
            requirements != ZIP_REQUIREMENTS_FILE or extra_files or bundle_aws_sdk or layers
        ):
            raise ValueError("requirements, extra_files, bundle_aws_sdk and layers apply to Packaging.ZIP only")
        if packaging is Packaging.ZIP and (image_build_args or image_files):
            raise ValueError("image_build_args and image_files apply to Packaging.IMAGE only")
        # No aws:SourceAccount / aws:SourceArn condition on this trust, unlike the Bedrock and Step Functions roles:
        # the Lambda guide (lambda-intro-execution-role) asks only that the trust name lambda.amazonaws.com and does
        # not document those keys for the execution role's AssumeRole, and a condition on a key the service does not
        # send denies the role to the function. Lambda documents lambda:SourceFunctionArn instead, set on the
        # function's own requests (permissions-source-function-arn); iam:PassRole on a role for Lambda is what
        # decides which functions may use it. See docs/security.md, "Permissions".
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"Execution role of the {service} function",
        )
        self.log_group = logs.LogGroup(self, "LogGroup", retention=retention(settings), encryption_key=encryption_key)
        self.log_group.grant_write(self.role)
        options: dict[str, Any] = {
            "architecture": self.ARCHITECTURES[settings.architecture],
            "role": self.role,
            "memory_size": memory_mb,
            "ephemeral_storage_size": cdk.Size.mebibytes(ephemeral_storage_mb),
            "timeout": timeout,
            "tracing": lambda_.Tracing.ACTIVE,
            "logging_format": lambda_.LoggingFormat.JSON,
            "application_log_level_v2": lambda_.ApplicationLogLevel[self.LOG_LEVEL],
            "system_log_level_v2": lambda_.SystemLogLevel.INFO,
            "log_group": self.log_group,
            "layers": list(layers) or None,
            "environment": {
                "POWERTOOLS_SERVICE_NAME": service,
                "POWERTOOLS_METRICS_NAMESPACE": self.METRICS_NAMESPACE,
                "POWERTOOLS_LOG_LEVEL": self.LOG_LEVEL,
                **(environment or {}),
            },
        }
        self.function: lambda_.Function
        if packaging is Packaging.IMAGE:
            image = lambda_.DockerImageCode.from_image_asset(
                str(PROJECT_ROOT),
                file=self.DOCKERFILE,
                cmd=[handler],
                platform=self.IMAGE_PLATFORMS[settings.architecture],
                exclude=[*ASSET_EXCLUDE[:1], *(f"!{path}" for path in image_files), *ASSET_EXCLUDE[1:]],
                ignore_mode=cdk.IgnoreMode.DOCKER,
                build_args=dict(image_build_args) if image_build_args else None,
            )
            self.function = lambda_.DockerImageFunction(self, "Function", code=image, **options)
        else:
            extra = tuple(sorted((extra_files or {}).items()))
            code = self._zip_code(settings.architecture, requirements, extra, bundle_aws_sdk)
            self.bundling = _local_bundler(
                settings.architecture, self.RUNTIME.name.removeprefix("python"), requirements, extra, bundle_aws_sdk
            )
            self.function = lambda_.Function(
                self, "Function", runtime=self.RUNTIME, handler=handler, code=code, **options
            )
            acknowledge(
                self.function,
                "AwsSolutions-L1",
                f"{self.RUNTIME.name} is a supported Lambda runtime, pinned so that the zip functions and the "
                "container-image functions (public.ecr.aws/lambda/python:3.13) run the same Python and wheels. "
                "Upgrade RUNTIME and lambdas/Dockerfile together.",
            )

        acknowledge(
            self.role,
            "AwsSolutions-IAM5[Resource::*]",
            "Tracing.ACTIVE grants xray:PutTraceSegments and xray:PutTelemetryRecords, which support no resource-level "
            "permissions; they are the only actions on '*' in a function's role (tests/infra/test_iam_usage.py).",
        )

    @classmethod
    def _zip_code(
        cls,
        architecture: str,
        requirements: str = ZIP_REQUIREMENTS_FILE,
        extra_files: tuple[tuple[str, str], ...] = (),
        bundle_aws_sdk: tuple[str, ...] = (),
    ) -> lambda_.Code:
        # The source hash covers lambdas/, prompt_templates.py, the requirements, the extra files and these options
        # (platform included), so a change of any of them, or of the architecture, rebundles; nothing else does.
        exclude = list(ASSET_EXCLUDE)
        if requirements != ZIP_REQUIREMENTS_FILE or extra_files:
            allow = [f"!{requirements}", *(f"!{project_path}" for _, project_path in extra_files)]
            exclude = [*exclude[:1], *allow, *exclude[1:]]
        return lambda_.Code.from_asset(
            str(PROJECT_ROOT),
            exclude=exclude,
            ignore_mode=cdk.IgnoreMode.DOCKER,
            bundling=cdk.BundlingOptions(
                image=cls.RUNTIME.bundling_image,
                platform=cls.BUNDLING_PLATFORMS[architecture],
                command=["false"],  # never runs: the local bundler always bundles or raises
                local=_local_bundler(
                    architecture, cls.RUNTIME.name.removeprefix("python"), requirements, extra_files, bundle_aws_sdk
                ),
            ),
        )


@functools.cache
def _local_bundler(
    architecture: str,
    python_version: str,
    requirements: str,
    extra_files: tuple[tuple[str, str], ...] = (),
    bundle_aws_sdk: tuple[str, ...] = (),
) -> PipLocalBundling:
    # One bundler object per kind of zip, so CDK's asset cache bundles the shared zip once per synth, not per function.
    return PipLocalBundling(
        project_root=PROJECT_ROOT,
        requirements=requirements,
        python_version=python_version,
        architecture=architecture,
        bundle_aws_sdk=bundle_aws_sdk,
        extra_files=extra_files,
    )
