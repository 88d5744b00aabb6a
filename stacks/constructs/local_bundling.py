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
# The Lambda Python runtime ships the AWS SDK; dependencies that pull it in (aws-xray-sdk -> botocore) must not
# bundle a second copy (it would add ~25 MB and shadow the runtime's version).
RUNTIME_PROVIDED = ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "urllib3", "six.py", "bin")
_PLATFORM_TAGS = {
    "arm64": ("manylinux2014_aarch64", "manylinux_2_28_aarch64"),
    "x86_64": ("manylinux2014_x86_64", "manylinux_2_28_x86_64"),
}


@jsii.implements(cdk.ILocalBundling)
class PipLocalBundling:
    """Install ``requirements`` for the Lambda runtime and architecture into the asset, then copy the sources.

    ``bundle_aws_sdk`` keeps the pip-installed botocore & co. (aiobotocore needs the exact botocore it pins, not the
    runtime's); ``extra_files`` copies more project files into the asset (asset path -> project path), executable.
    """

    def __init__(
        self,
        *,
        project_root: Path,
        requirements: str,
        python_version: str,
        architecture: str,
        bundle_aws_sdk: bool = False,
        extra_files: tuple[tuple[str, str], ...] = (),
    ) -> None:
        self.project_root = project_root
        self.requirements = project_root / requirements
        self.python_version = python_version
        self.platform_tags = _PLATFORM_TAGS[architecture]
        self.strip = () if bundle_aws_sdk else RUNTIME_PROVIDED
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
