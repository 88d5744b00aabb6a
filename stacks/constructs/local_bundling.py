"""Docker-free bundling for the zip Lambda asset: pip installs Linux wheels, then the handler sources are staged.

CDK calls ``try_bundle`` instead of running the bundling image when it returns True, so synth needs no Docker. pip
runs with ``--python-version`` of the Lambda runtime and both manylinux tags of the target architecture: recent wheels
are ``manylinux_2_28`` only, and with ``manylinux2014`` alone pip would quietly backtrack to old releases.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import jsii

# Top-level entries of the project that every Lambda asset (zip and image) needs, relative to the project root.
HANDLER_SOURCES = ("lambdas", "prompt_templates.py")
_SKIP = shutil.ignore_patterns("__pycache__", "*.pyc", "Dockerfile")
# What the Lambda Python runtime ships: the AWS SDK and its dependencies. A function that calls no AWS service bundles
# none of it (aws-xray-sdk pulls in botocore: ~25 MB no call would use); one that calls AWS bundles the pinned SDK.
RUNTIME_PROVIDED = ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "urllib3", "six.py", "bin")
_PLATFORM_TAGS = {
    "arm64": ("manylinux2014_aarch64", "manylinux_2_28_aarch64"),
    "x86_64": ("manylinux2014_x86_64", "manylinux_2_28_x86_64"),
}


@jsii.implements(cdk.ILocalBundling)
class PipLocalBundling:
    """Install ``requirements`` for the Lambda runtime and architecture into the asset, then copy the sources.

    ``bundle_aws_sdk`` names the AWS services the function calls and keeps the pip-installed boto3/botocore & co.
    (pinned in the requirements file: the SDK the tests ran with, not the runtime's, whose version depends on the
    runtime version and region; aiobotocore needs the exact botocore it pins) with the models of those services only
    (the models of the other ~400 services are 27 MB that no call would read). Empty (a function that calls no AWS
    service), the SDK is left out. ``extra_files`` copies more project files into the asset (asset path -> project
    path), executable.
    """

    def __init__(
        self,
        *,
        project_root: Path,
        requirements: str,
        python_version: str,
        architecture: str,
        bundle_aws_sdk: tuple[str, ...] = (),
        extra_files: tuple[tuple[str, str], ...] = (),
    ) -> None:
        self.project_root = project_root
        self.requirements = project_root / requirements
        self.python_version = python_version
        self.platform_tags = _PLATFORM_TAGS[architecture]
        self.strip = () if bundle_aws_sdk else RUNTIME_PROVIDED
        self.sdk_services = bundle_aws_sdk
        self.extra_files = extra_files

    def try_bundle(self, output_dir: str, *, image: cdk.DockerImage, **_options: Any) -> bool:
        platforms = [arg for tag in self.platform_tags for arg in ("--platform", tag)]
        subprocess.run(
            [
                sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                "--requirement", str(self.requirements), "--target", output_dir,
                "--implementation", "cp", "--python-version", self.python_version, *platforms,
                "--only-binary=:all:", "--no-compile", "--upgrade",
            ],
            check=True,
        )  # fmt: skip
        for entry in Path(output_dir).iterdir():
            if entry.name not in self.strip and entry.name.split("-")[0] not in self.strip:
                continue
            if entry.is_dir():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        if self.sdk_services:
            keep_service_models(Path(output_dir) / "botocore" / "data", self.sdk_services)
        for name in HANDLER_SOURCES:
            source, target = self.project_root / name, Path(output_dir) / name
            if not source.exists():
                raise FileNotFoundError(f"{source} is missing: every Lambda asset stages {', '.join(HANDLER_SOURCES)}")
            if source.is_dir():
                shutil.copytree(source, target, ignore=_SKIP, dirs_exist_ok=True)
            else:
                shutil.copy2(source, target)
        for asset_path, project_path in self.extra_files:
            target = Path(output_dir) / asset_path
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(self.project_root / project_path, target)
            target.chmod(0o755)  # a start-up script such as run.sh must be executable in the zip
        return True


def keep_service_models(data_dir: Path, services: tuple[str, ...]) -> None:
    """Remove botocore's models of services not in ``services`` (one folder each); the shared files (endpoints,
    partitions, retry and default configuration) at the top of ``data/`` stay. A service without a model is an error:
    its client could not be created in the function."""
    if not data_dir.is_dir():
        return
    missing = [name for name in services if not (data_dir / name).is_dir()]
    if missing:
        raise FileNotFoundError(f"botocore has no model for {', '.join(missing)}: check the service names")
    for entry in data_dir.iterdir():
        if entry.is_dir() and entry.name not in services:
            shutil.rmtree(entry)
