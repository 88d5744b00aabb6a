"""The real CDK CLI: `cdk synth -c maxConcurrentJobs=7` gives "MaxConcurrency": 7 (the issue's acceptance check)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CDK = ROOT / "node_modules" / ".bin" / "cdk"


@pytest.mark.slow
@pytest.mark.skipif(not CDK.exists(), reason="the pinned CDK CLI is not installed (npm ci)")
def test_cli_synth_takes_max_concurrency_from_context(tmp_path: Path) -> None:
    # GIVEN the pinned CLI, offline, with bundling skipped
    env = {
        **os.environ,
        "BATCH_SKIP_BUNDLING": "1",
        "CDK_DISABLE_VERSION_CHECK": "1",
        "CDK_DISABLE_CLI_TELEMETRY": "1",
        "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
    }
    # WHEN synthesizing with -c maxConcurrentJobs=7
    result = subprocess.run(
        [
            "npx",
            "--no-install",
            "cdk",
            "synth",
            "-q",
            "--no-notices",
            "-c",
            "maxConcurrentJobs=7",
            "--output",
            str(tmp_path),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # THEN the written template's Distributed Map has MaxConcurrency 7
    template = json.loads((tmp_path / "BedrockBatchInference.template.json").read_text())
    (machine,) = [r for r in template["Resources"].values() if r["Type"] == "AWS::StepFunctions::StateMachine"]
    definition = "".join(p for p in machine["Properties"]["DefinitionString"]["Fn::Join"][1] if isinstance(p, str))
    assert '"MaxConcurrency":7,' in definition
