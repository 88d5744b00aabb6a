"""The per-model quota of submitted + in-progress jobs holds even when maxConcurrentJobs is larger than it."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from local.runner import LocalRuntime, RuntimeOptions

pytestmark = pytest.mark.slow
CLAUDE = "anthropic.claude-3-haiku-20240307-v1:0"


def test_more_concurrent_jobs_than_the_quota_wait_for_a_slot_and_all_finish(tmp_path: Path):
    # GIVEN 8 jobs, a concurrency cap of 8, but a quota of 3 jobs in flight per model (scaled down from 20); each
    # status lasts 0.5 s, so a job holds its slot ~2.5 s and the later submissions surely meet a full quota
    path = tmp_path / "topics.csv"
    path.write_text("topic\n" + "".join(f"topic {i}\n" for i in range(800)))
    options = RuntimeOptions(max_concurrent_jobs=8, step_seconds=0.5, max_active_jobs_per_model=3)
    with LocalRuntime(options) as runtime:
        execution = runtime.start(
            {
                "model_id": CLAUDE,
                "prompt_id": "joke_about_topic",
                "s3_uri": runtime.upload_input(path),
                "max_records_per_job": 100,
            }
        )
        # WHEN the run goes
        outcome = runtime.wait(execution)
        # THEN it succeeds, the quota was hit and retried, and never more than 3 jobs were in flight
        assert outcome.status == "SUCCEEDED", outcome.error_message
        assert runtime.emulator.peak_active_jobs_per_model() == {CLAUDE: 3}
        assert runtime.emulator.jobs_created_per_model() == {CLAUDE: 8}
        assert runtime.lambdas.invocations[_submit(runtime)] > 8  # quota errors went back through the Retry
        files = runtime.download_outputs(runtime.run_id(execution), tmp_path / "out")
    table = pq.read_table([f for f in files if f.suffix == ".parquet"])
    assert table.num_rows == 800 and table.column("error_code").null_count == 800


def _submit(runtime: LocalRuntime) -> str:
    return next(f.name for f in runtime.functions if f.handler.startswith("lambdas.submit_job."))
