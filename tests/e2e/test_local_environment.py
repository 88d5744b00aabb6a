"""One function, one environment, end to end: with cdk.json options that give single functions variables of their own
(``tags`` on Submit, ``prices`` on Finalize), the synthesized state machine runs each handler with its own function's
variables only. A handler that read a variable only another function defines would fail the run here (read without a
default) or be named among the foreign reads (read with one)."""

from __future__ import annotations

from pathlib import Path

import pytest

from local.runner import LocalRuntime, RuntimeOptions
from stacks.synth import synth_batch_template
from tests.e2e.local_runs import CLAUDE, read_results, read_summary

pytestmark = pytest.mark.slow

TAGS = {"project": "jokes", "costCentre": "cc-42"}
PRICE = {"input_per_1m": 1000.0, "output_per_1m": 2000.0}  # far from prices.json, so its use shows


def test_each_handler_runs_with_its_own_functions_variables(tmp_path: Path) -> None:
    # GIVEN the batch stack with tags and a price override: JOB_TAGS on Submit only, PRICES on Finalize only
    template = synth_batch_template({"pollIntervalSeconds": 1, "tags": TAGS, "prices": {CLAUDE: PRICE}}).template
    definitions = [
        resource["Properties"].get("Environment", {}).get("Variables", {})
        for resource in template["Resources"].values()
        if resource["Type"] == "AWS::Lambda::Function"
    ]
    holders = {name: sum(name in variables for variables in definitions) for name in ("JOB_TAGS", "PRICES")}
    assert holders == {"JOB_TAGS": 1, "PRICES": 1}  # the premise: each is one function's own
    path = tmp_path / "topics.csv"
    path.write_text("topic\n" + "".join(f"topic {i}\n" for i in range(150)))
    # WHEN a run goes through the synthesized state machine
    with LocalRuntime(RuntimeOptions(step_seconds=0.05), template=template) as runtime:
        execution = runtime.start(
            {"model_id": CLAUDE, "prompt_id": "joke_about_topic", "s3_uri": runtime.upload_input(path)}
        )
        outcome = runtime.wait(execution)
        jobs = runtime.emulator.jobs()
        runtime.download_outputs(runtime.run_id(execution), tmp_path / "out")
    # THEN every handler found what it needs in its own environment: the run succeeded with every row answered
    assert outcome.status == "SUCCEEDED", outcome.error_message
    assert read_results(tmp_path / "out").column("error_code").null_count == 150
    # AND no handler code read a variable only another function defines, not even with a default: the only such
    # reads are Settings.from_env's (it reads every setting, each function using its own), e.g. Poll's JOB_TAGS
    readers = {reader for _function, _name, reader in runtime.lambdas.foreign_reads}
    assert readers == {"lambdas.shared.settings"}
    # AND Submit read its JOB_TAGS (the job carries them), Finalize its PRICES (the estimate uses the override)
    (job,) = jobs
    assert {tag["key"]: tag["value"] for tag in job["tags"]}.items() >= TAGS.items()
    estimate = read_summary(tmp_path / "out")["estimated_cost"]
    assert estimate["on_demand_per_1m"] == {"input": 1000.0, "output": 2000.0}
