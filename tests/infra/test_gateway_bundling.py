"""The gateway's zip bundling (never run by the synth tests, which skip bundling): pip is faked, the staging is real."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from stacks.constructs import local_bundling
from stacks.constructs.local_bundling import PipLocalBundling
from stacks.constructs.model_gateway import REQUIREMENTS, RUN_SCRIPT, SDK_SERVICES
from stacks.constructs.python_function import PROJECT_ROOT


@pytest.fixture
def pip_calls(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Replace pip with a fake that 'installs' botocore (with three service models and a shared data file), boto3,
    aiobotocore and a bin/ script into --target."""
    calls: list[list[str]] = []

    def fake_run(args: list[str], **_kwargs: Any) -> subprocess.CompletedProcess[str]:
        calls.append(args)
        target = Path(args[args.index("--target") + 1])
        for package in ("botocore", "boto3", "aiobotocore", "bin"):
            (target / package).mkdir(parents=True, exist_ok=True)
            (target / package / "__init__.py").write_text("")
        for service in (*SDK_SERVICES, "ec2", "sagemaker"):
            (target / "botocore" / "data" / service / "2023-09-30").mkdir(parents=True, exist_ok=True)
        (target / "botocore" / "data" / "endpoints.json").write_text("{}")
        return subprocess.CompletedProcess(args, 0)

    monkeypatch.setattr(local_bundling.subprocess, "run", fake_run)
    return calls


def test_gateway_bundle_keeps_its_botocore_and_stages_an_executable_run_sh(
    pip_calls: list[list[str]], tmp_path: Path
) -> None:
    # GIVEN the gateway's bundler: its requirements, its own AWS SDK, run.sh at the asset root
    bundler = PipLocalBundling(
        project_root=PROJECT_ROOT,
        requirements=REQUIREMENTS,
        python_version="3.13",
        architecture="arm64",
        bundle_aws_sdk=SDK_SERVICES,
        extra_files=(("run.sh", RUN_SCRIPT),),
    )
    # WHEN bundling
    assert bundler.try_bundle(str(tmp_path), image=None)  # type: ignore[arg-type]
    # THEN pip installed requirements-gateway.txt for aarch64 / Python 3.13
    (args,) = pip_calls
    assert args[args.index("--requirement") + 1] == str(PROJECT_ROOT / REQUIREMENTS)
    assert "manylinux_2_28_aarch64" in args and args[args.index("--python-version") + 1] == "3.13"
    # AND botocore stays (aiobotocore needs its pin), run.sh is the project's script and executable, sources staged
    assert (tmp_path / "botocore").is_dir() and (tmp_path / "aiobotocore").is_dir()
    # AND botocore keeps the models of the gateway's services only, and its shared data files
    data = tmp_path / "botocore" / "data"
    assert sorted(p.name for p in data.iterdir() if p.is_dir()) == sorted(SDK_SERVICES)
    assert (data / "endpoints.json").is_file()
    run_sh = tmp_path / "run.sh"
    assert run_sh.read_text() == (PROJECT_ROOT / RUN_SCRIPT).read_text()
    assert run_sh.stat().st_mode & 0o777 == 0o755
    assert (tmp_path / "lambdas" / "__init__.py").is_file() and (tmp_path / "prompt_templates.py").is_file()


def test_a_service_without_a_model_stops_the_bundling(pip_calls: list[list[str]], tmp_path: Path) -> None:
    # GIVEN a bundler asked to keep a misspelt service
    bundler = PipLocalBundling(
        project_root=PROJECT_ROOT,
        requirements=REQUIREMENTS,
        python_version="3.13",
        architecture="arm64",
        bundle_aws_sdk=("bedrock-runtim",),
    )
    # WHEN bundling THEN it stops, naming the service, instead of shipping a function that cannot create its client
    with pytest.raises(FileNotFoundError, match="bedrock-runtim"):
        bundler.try_bundle(str(tmp_path), image=None)  # type: ignore[arg-type]


def test_a_bundle_for_code_that_calls_no_aws_service_drops_the_sdk(pip_calls: list[list[str]], tmp_path: Path) -> None:
    # GIVEN a bundler that names no AWS service (a function whose code calls none) / WHEN bundling
    bundler = PipLocalBundling(
        project_root=PROJECT_ROOT, requirements="requirements-lambda.txt", python_version="3.13", architecture="arm64"
    )
    assert bundler.try_bundle(str(tmp_path), image=None)  # type: ignore[arg-type]
    # THEN the SDK pulled in by dependencies (aws-xray-sdk -> botocore) is removed, and no run.sh is added
    assert not (tmp_path / "botocore").exists() and not (tmp_path / "boto3").exists()
    assert (tmp_path / "aiobotocore").is_dir() and not (tmp_path / "run.sh").exists()


def test_gateway_requirements_are_the_pinned_set() -> None:
    lines = (PROJECT_ROOT / REQUIREMENTS).read_text().splitlines()
    pins = sorted(line for line in lines if line and not line.startswith("#"))
    assert pins == [
        "aiobotocore==3.10.0",
        "aws-lambda-powertools[tracer]==3.37.0",
        "botocore==1.43.117",
        "fastapi==0.163.2",
        "httptools==0.9.0",
        "jsonschema==4.26.0",
        "pydantic==2.14.4",
        "python-multipart==0.0.34",
        "uvicorn==0.54.0",
        "uvloop==0.23.0",
    ]
