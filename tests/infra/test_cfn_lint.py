"""cfn-lint accepts the synthesized batch template (W3005, redundant DependsOn in CDK output, is ignored)."""

from __future__ import annotations

from pathlib import Path

from aws_cdk.assertions import Template

from tests.infra.conftest import cfn_lint


def test_template_passes_cfn_lint(template: Template, tmp_path: Path) -> None:
    # GIVEN the synthesized template WHEN cfn-lint checks it THEN it reports nothing
    assert cfn_lint({"BedrockBatchInference": template.to_json()}, tmp_path) == ""
