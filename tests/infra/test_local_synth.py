"""The local runtime synthesizes in a child process: the CDK's node kernel does not stay for the whole run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from aws_cdk.assertions import Template

from local import runner
from local.runner import SYNTH_CACHE_VARIABLE, RuntimeOptions, _functions, synth_template

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
    # GIVEN a fresh Python process, without the test run's synth cache (it synthesizes for real)
    env = {name: value for name, value in os.environ.items() if name != SYNTH_CACHE_VARIABLE}
    # WHEN the local runtime synthesizes its template there (maxConcurrentJobs overridden to 3)
    done = subprocess.run(
        [sys.executable, "-c", _SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True, check=True, timeout=600
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


def test_the_synth_cache_synthesizes_each_context_once_and_a_new_context_afresh(tmp_path: Path, monkeypatch) -> None:
    # GIVEN a synth cache directory, and a synth that counts its calls and returns a template naming its context
    contexts: list[dict] = []

    def synth(context: dict) -> dict:
        contexts.append(context)
        return {"Resources": {}, "Context": context}

    monkeypatch.setattr(runner, "synth_in_child", synth)
    monkeypatch.setenv(SYNTH_CACHE_VARIABLE, str(tmp_path / "cache"))
    # WHEN the same options synthesize twice, then other options once
    first = synth_template(RuntimeOptions(max_concurrent_jobs=3))
    again = synth_template(RuntimeOptions(max_concurrent_jobs=3))
    other = synth_template(RuntimeOptions(max_concurrent_jobs=4))
    # THEN the first context was synthesized once and read back whole, and the other context synthesized afresh
    assert contexts == [
        {"pollIntervalSeconds": 1, "maxConcurrentJobs": 3},
        {"pollIntervalSeconds": 1, "maxConcurrentJobs": 4},
    ]
    assert again == first == {"Resources": {}, "Context": contexts[0]}
    assert other["Context"] == contexts[1]


def test_without_the_synth_cache_every_runtime_synthesizes_afresh(monkeypatch) -> None:
    # GIVEN no synth cache directory, and a synth that counts its calls
    contexts: list[dict] = []

    def synth(context: dict) -> dict:
        contexts.append(context)
        return {"Resources": {}}

    monkeypatch.setattr(runner, "synth_in_child", synth)
    monkeypatch.delenv(SYNTH_CACHE_VARIABLE, raising=False)
    # WHEN the same options synthesize twice
    synth_template(RuntimeOptions())
    synth_template(RuntimeOptions())
    # THEN both synthesized
    assert contexts == [{"pollIntervalSeconds": 1}, {"pollIntervalSeconds": 1}]
