"""cdk-nag (AwsSolutions, v3 validation plugin) passes; each remaining finding is acknowledged at its resource."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from aws_cdk import aws_s3 as s3

from stacks.synth import build_app
from tests.infra.conftest import Synthesized


def test_synth_has_no_unacknowledged_findings(synthesized: Synthesized) -> None:
    # GIVEN the app synthesized with AwsSolutionsChecks registered (the fixture's synth raises on any error)
    report = json.loads((Path(synthesized.assembly.directory) / "validation-report.json").read_text())
    # WHEN collecting the violations the plugins still report
    violations = [
        (violation["ruleName"], resource.get("constructPath"))
        for plugin in report["pluginReports"]
        for violation in plugin["violations"]
        for resource in violation["violatingResources"]
    ]
    # THEN there are none, neither errors nor warnings
    assert violations == []


def test_nag_gate_rejects_a_non_compliant_resource(tmp_path: Path) -> None:
    # GIVEN the same app with a bucket that ignores every rule
    app, stack = build_app(skip_bundling=True, outdir=str(tmp_path))
    s3.Bucket(stack, "Careless")
    # WHEN synthesizing / THEN cdk-nag stops the synth and names the findings
    with pytest.raises(RuntimeError, match="ValidationFailed"):
        app.synth()
    report = (tmp_path / "validation-report.json").read_text()
    assert "AwsSolutions-S1" in report and "AwsSolutions-S10" in report
