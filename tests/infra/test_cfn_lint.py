"""cfn-lint accepts the synthesized template (W3005, redundant DependsOn in CDK output, is ignored)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from aws_cdk.assertions import Template

CFN_LINT = Path(sys.executable).parent / "cfn-lint"  # the venv's entry point (cfnlint has no __main__)


def test_template_passes_cfn_lint(template: Template, tmp_path: Path) -> None:
    # GIVEN the synthesized template on disk
    path = tmp_path / "BedrockBatchInference.template.json"
    path.write_text(json.dumps(template.to_json()))
    # WHEN cfn-lint checks it
    result = subprocess.run(
        [str(CFN_LINT), "--ignore-checks", "W3005", "--", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    # THEN it reports nothing
    assert result.returncode == 0, result.stdout + result.stderr
