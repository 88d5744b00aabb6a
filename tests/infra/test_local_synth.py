"""The local runtime synthesizes in a child process: the CDK's node kernel does not stay for the whole run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from aws_cdk.assertions import Template

from local.runner import _functions

ROOT = Path(__file__).resolve().parents[2]

# Run in a fresh interpreter: this test process may have started a jsii kernel already (the infra suite's app).
_SCRIPT = """
import json, os, sys
from pathlib import Path
from local.runner import RuntimeOptions, synth_template

template = synth_template(RuntimeOptions(max_concurrent_jobs=3))
children = []
for entry in Path("/proc").iterdir():
    if entry.name.isdigit():
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if parent == os.getpid():
            children.append((entry / "cmdline").read_bytes().replace(b"\\0", b" ").decode(errors="replace"))
machines = [r for r in template["Resources"].values() if r["Type"] == "AWS::StepFunctions::StateMachine"]
print(json.dumps({"children": children, "jsii_loaded": "jsii" in sys.modules, "machines": len(machines),
                  "definition": json.dumps(machines[0]["Properties"]["DefinitionString"])}))
"""


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the process table from /proc (Linux)")
def test_synth_leaves_no_process_behind_and_returns_the_template_with_the_overrides() -> None:
    # GIVEN a fresh Python process
    # WHEN the local runtime synthesizes its template there (maxConcurrentJobs overridden to 3)
    done = subprocess.run(
        [sys.executable, "-c", _SCRIPT], cwd=ROOT, capture_output=True, text=True, check=True, timeout=600
    )
    report = json.loads(done.stdout.strip().splitlines()[-1])
    # THEN no child process (the CDK's node kernel) is left, the CDK was never loaded in it,
    assert report["children"] == []
    assert report["jsii_loaded"] is False
    # AND the template has the one state machine, with the override applied
    assert report["machines"] == 1
    assert '\\"MaxConcurrency\\":3' in report["definition"]


def test_the_local_runtime_bounds_the_image_packaged_functions_as_the_data_plane(template: Template) -> None:
    # GIVEN the synthesized template
    # WHEN the local runtime reads its functions
    functions = _functions(dict(template.to_json()), lambda value: value)
    # THEN exactly the data-plane handlers (packaged as an image) take a data-plane slot when they run
    data_plane = {f.handler.split(".")[1] for f in functions if f.data_plane}
    assert data_plane == {"preprocess", "postprocess", "resubmit", "finalize"}
    assert {f.handler.split(".")[1] for f in functions} - data_plane == {"submit_job", "poll_job", "on_demand"}  # zips
