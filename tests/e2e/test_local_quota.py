"""Per-model batch quotas end to end: jobs are split with the model's own record quota, the quota of submitted +
in-progress jobs holds even when maxConcurrentJobs is larger, and a run without Service Quotas reports the defaults
it used. The emulator serves the quotas through Service Quotas and validates the jobs against the same values."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from local.emulator import Quotas
from local.runner import LocalRuntime, RuntimeOptions

pytestmark = pytest.mark.slow
CLAUDE = "anthropic.claude-3-haiku-20240307-v1:0"


def test_more_concurrent_jobs_than_the_quota_wait_for_a_slot_and_all_finish(tmp_path: Path):
    # GIVEN 8 jobs, cdk.json's concurrency cap (20: the Map may submit all 8 at once), but a quota of 3 jobs in flight
    # per model (scaled down from 20), and the emulator holding its first jobs in Submitted until a submission has met
    # the full quota (on a loaded machine the first jobs could otherwise end before the later ones are submitted, and
    # the quota would never be met); the hold makes the full quota certain, so the jobs need no long statuses. The
    # default cap keeps the run on the template the other default runs synthesized (one synth fewer per test run).
    path = tmp_path / "topics.csv"
    path.write_text("topic\n" + "".join(f"topic {i}\n" for i in range(800)))
    options = RuntimeOptions(step_seconds=0.05, max_active_jobs_per_model=3)
    with LocalRuntime(options) as runtime:
        runtime.emulator.hold_new_jobs()
        execution = runtime.start(
            {
                "model_id": CLAUDE,
                "prompt_id": "joke_about_topic",
                "s3_uri": runtime.upload_input(path),
                "max_records_per_job": 100,
            }
        )
        # WHEN the run goes, and its jobs are let go once a ninth submission was tried (8 jobs: one was refused)
        submit = _submit(runtime)
        deadline = time.monotonic() + 120
        while runtime.lambdas.invocations[submit] <= 8 and time.monotonic() < deadline:
            time.sleep(0.05)
        refused_while_held = runtime.lambdas.invocations[submit] > 8
        held = runtime.emulator.jobs_created_per_model()
        runtime.emulator.hold_new_jobs(False)
        outcome = runtime.wait(execution)
        # THEN a submission met the full quota while 3 jobs held it, none beyond 3 was created, and once they were
        # released the refused submissions went back through the Retry and every job finished
        assert refused_while_held, "no submission was refused while the quota was full"
        assert held == {CLAUDE: 3}
        assert outcome.status == "SUCCEEDED", outcome.error_message
        assert runtime.emulator.peak_active_jobs_per_model() == {CLAUDE: 3}
        assert runtime.emulator.jobs_created_per_model() == {CLAUDE: 8}
        files = runtime.download_outputs(runtime.run_id(execution), tmp_path / "out")
    table = pq.read_table([f for f in files if f.suffix == ".parquet"])
    assert table.num_rows == 800 and table.column("error_code").null_count == 800
    # AND the run capped maxConcurrentJobs (20) at the quota it read from Service Quotas (3)
    quotas = summary(files)["quotas"]
    assert quotas["max_concurrent_jobs_effective"] == 3
    assert quotas["values"]["max_concurrent_jobs"]["value"] == 3
    assert quotas["values"]["max_concurrent_jobs"]["source"] == "service-quotas"


def test_a_model_quota_below_our_default_splits_into_jobs_within_it(tmp_path: Path):
    # GIVEN a model whose records-per-job quota is 1,000 (our default is 50,000) and 2,500 rows
    path = tmp_path / "topics.csv"
    path.write_text("topic\n" + "".join(f"topic {i}\n" for i in range(2500)))
    options = RuntimeOptions(step_seconds=0.05, model_quotas={CLAUDE: Quotas(max_records_per_job=1000)})
    with LocalRuntime(options) as runtime:
        # WHEN a run goes without max_records_per_job
        execution = runtime.start(
            {"model_id": CLAUDE, "prompt_id": "joke_about_topic", "s3_uri": runtime.upload_input(path)}
        )
        outcome = runtime.wait(execution)
        # THEN it succeeds with 3 jobs of at most 1,000 records (cut greedily: a CSV input), each accepted by the
        # emulator's validation
        assert outcome.status == "SUCCEEDED", outcome.error_message
        jobs = runtime.emulator.jobs()
        assert sorted(job["totalRecordCount"] for job in jobs) == [500, 1000, 1000]
        assert {job["status"] for job in jobs} == {"Completed"}
        files = runtime.download_outputs(runtime.run_id(execution), tmp_path / "out")
    table = pq.read_table([f for f in files if f.suffix == ".parquet"])
    assert table.num_rows == 2500 and table.column("error_code").null_count == 2500
    # AND the summary says the record quota came from Service Quotas
    values = summary(files)["quotas"]["values"]
    assert values["max_records_per_job"]["value"] == 1000
    assert values["max_records_per_job"]["source"] == "service-quotas"


def test_without_service_quotas_the_run_uses_and_reports_the_documented_defaults(tmp_path: Path):
    # GIVEN a deployment whose preprocess may not read Service Quotas
    path = tmp_path / "topics.csv"
    path.write_text("topic\n" + "".join(f"topic {i}\n" for i in range(150)))
    with LocalRuntime(RuntimeOptions(step_seconds=0.05)) as runtime:
        runtime.emulator.service_quotas.access_denied = True
        # WHEN a run goes
        execution = runtime.start(
            {"model_id": CLAUDE, "prompt_id": "joke_about_topic", "s3_uri": runtime.upload_input(path)}
        )
        outcome = runtime.wait(execution)
        files = runtime.download_outputs(runtime.run_id(execution), tmp_path / "out")
    # THEN it still succeeds, with the documented defaults, and summary.json says each value is a default and why
    assert outcome.status == "SUCCEEDED", outcome.error_message
    quotas = summary(files)["quotas"]
    assert {kind: value["source"] for kind, value in quotas["values"].items()} == dict.fromkeys(
        quotas["values"], "default"
    )
    assert quotas["values"]["max_records_per_job"]["value"] == 50_000
    assert quotas["values"]["min_records_per_job"]["value"] == 100
    assert len(quotas["defaults_used"]) == 6 and "AccessDeniedException" in quotas["note"]


def summary(files: list[Path]) -> dict[str, Any]:
    return dict(json.loads(next(f for f in files if f.name == "summary.json").read_text()))


def _submit(runtime: LocalRuntime) -> str:
    return next(f.name for f in runtime.functions if f.handler.startswith("lambdas.submit_job."))
