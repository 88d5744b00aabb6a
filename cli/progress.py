"""Live progress of a local batch run: jobs submitted / running / done and records written."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

IN_FLIGHT = {"Submitted", "Validating", "Scheduled", "InProgress", "Stopping"}


class BatchProgress:
    def __init__(self, runtime: Any, execution_arn: str, *, enabled: bool = True) -> None:
        self.runtime = runtime
        self.run_id = runtime.run_id(execution_arn)
        self.enabled = enabled
        self.total_jobs: int | None = None
        self.total_records = 0
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[detail]}"),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            disable=not enabled,
        )
        self._task = self._progress.add_task("preprocessing", total=None, detail="")

    def __enter__(self) -> BatchProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.update()
        self._progress.stop()

    def _load_manifest(self) -> None:
        s3, bucket = self.runtime.s3, self.runtime.bucket
        try:
            jobs = json.loads(s3.get_object(Bucket=bucket, Key=f"runs/{self.run_id}/jobs.json")["Body"].read())
        except s3.exceptions.NoSuchKey:
            return
        self.total_jobs = len(jobs)
        self.total_records = sum(job["record_count"] for job in jobs)

    def update(self) -> None:
        if not self.enabled:
            return
        if self.total_jobs is None:
            self._load_manifest()
            if self.total_jobs is None:
                return
        statuses = Counter(self.runtime.job_statuses())
        results = list(self._result_keys())
        running = sum(count for status, count in statuses.items() if status in IN_FLIGHT)
        submitted = f"{sum(statuses.values())} submitted, {running} running, " if statuses else ""
        detail = f"jobs: {submitted}{len(results)} done | records: {self.total_records}"
        self._progress.update(
            self._task, description="jobs", total=self.total_jobs, completed=len(results), detail=detail
        )

    def _result_keys(self) -> Any:
        from lambdas.shared.s3io import list_keys

        return list_keys(self.runtime.s3, self.runtime.bucket, f"runs/{self.run_id}/results/")
