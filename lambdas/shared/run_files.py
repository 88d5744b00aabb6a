"""Readers of a run's files shared by the data-plane functions: job manifests, job results, output columns.

Imports pyarrow, so control-plane (zip) functions must not import this module. Column names of the output Parquet
files are a contract (README, "Start a run", Outputs): the input columns, then ``response`` or ``embedding``,
``error_code`` and ``error_message``; a resubmission job's output has ``row`` (the row number) instead of the input
columns.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from lambdas.shared import layout
from lambdas.shared.models import JobResult, JobSpec
from lambdas.shared.s3io import S3RangeReader, get_json, list_keys

ROW = "row"
ERROR_CODE = "error_code"
ERROR_MESSAGE = "error_message"
EMBEDDING_TYPE = pa.list_(pa.float32())


def value_column(output_kind: str) -> str:
    """``response`` (text models) or ``embedding`` (embedding models)."""
    return "embedding" if output_kind == "embedding" else "response"


def value_type(output_kind: str) -> pa.DataType:
    return EMBEDDING_TYPE if output_kind == "embedding" else pa.string()


def read_manifest(s3: Any, bucket: str, key: str) -> list[JobSpec]:
    return [JobSpec.model_validate(item) for item in get_json(s3, bucket, key)]


def read_results(s3: Any, bucket: str, run_id: str, *, resubmission: bool = False) -> dict[int, JobResult]:
    """The results postprocess stored, by job index: of the planned jobs, or of the resubmission jobs."""
    results: dict[int, JobResult] = {}
    for key, _size in list_keys(s3, bucket, layout.results_prefix(run_id, resubmission=resubmission)):
        result = JobResult.model_validate(get_json(s3, bucket, key))
        results[result.index] = result
    return results


def read_column(s3: Any, bucket: str, key: str, name: str) -> pa.Array:
    """One column of a Parquet object, fetching only that column's pages."""
    return pq.read_table(S3RangeReader(s3, bucket, key), columns=[name]).column(name).combine_chunks()


def read_row_numbers(s3: Any, bucket: str, key: str) -> np.ndarray:
    """The ``row`` column of a resubmission rows or output file, as int64."""
    return read_column(s3, bucket, key, ROW).to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
