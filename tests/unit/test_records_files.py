"""A run's records as a list of Parquet files (a prefix of Parquet files copied as they are): a job's row range
mapped onto the files it overlaps, and read from them as from one object."""

from __future__ import annotations

import io
import json
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lambdas.shared import layout
from lambdas.shared.models import RecordsFile, RecordsIndex
from lambdas.shared.run_files import file_ranges, iter_run_rows

RUN = "run-1"
BUCKET = "bucket"


def test_a_range_inside_one_file_maps_to_that_file_alone():
    # GIVEN files of 100, 50 and 80 rows
    # WHEN rows [110, 140) are asked for THEN only the second file is read, from its row 10
    assert file_ranges([100, 50, 80], 110, 30) == [(1, 10, 30)]


def test_a_range_across_several_files_takes_each_files_part_in_order():
    # GIVEN files of 100, 50 and 80 rows
    # WHEN rows [90, 200) are asked for THEN the end of the first, all of the second and the start of the third
    assert file_ranges([100, 50, 80], 90, 110) == [(0, 90, 10), (1, 0, 50), (2, 0, 50)]


@pytest.mark.parametrize(
    ("first_row", "count", "parts"),
    [
        (0, 100, [(0, 0, 100)]),  # exactly the first file
        (100, 50, [(1, 0, 50)]),  # exactly the second: starts where the first ends
        (99, 2, [(0, 99, 1), (1, 0, 1)]),  # one row on each side of a boundary
        (150, 80, [(2, 0, 80)]),  # the last file to its last row
        (0, 230, [(0, 0, 100), (1, 0, 50), (2, 0, 80)]),  # everything
        (229, 1, [(2, 79, 1)]),  # the very last row
    ],
)
def test_ranges_at_the_files_edges(first_row: int, count: int, parts: list[tuple[int, int, int]]):
    # GIVEN files of 100, 50 and 80 rows / WHEN a range starts or ends on a file's edge
    # THEN no file is given an empty part and every row is taken once
    assert file_ranges([100, 50, 80], first_row, count) == parts


def test_empty_files_in_the_list_are_skipped_and_keep_the_numbering():
    # GIVEN an empty file first, one between two files, and one at the end
    rows = [0, 100, 0, 0, 50, 0]
    # WHEN rows [90, 120) are asked for THEN the empty files get no part and the positions are the list's
    assert file_ranges(rows, 90, 30) == [(1, 90, 10), (4, 0, 20)]
    assert file_ranges(rows, 0, 150) == [(1, 0, 100), (4, 0, 50)]


def test_a_range_past_the_last_row_gets_only_the_rows_there_are():
    # GIVEN files of 100 and 50 rows / WHEN rows [140, 160) are asked for THEN only the 10 that exist are mapped
    assert file_ranges([100, 50], 140, 20) == [(1, 40, 10)]
    assert file_ranges([100, 50], 150, 5) == []


class Bucket:
    """Objects in memory, read as S3RangeReader and get_json read them (whole or by a byte range)."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}

    def put(self, key: str, body: bytes) -> None:
        self.objects[key] = body

    def head_object(self, Bucket: str, Key: str) -> dict[str, Any]:  # noqa: N803 (boto3's parameter names)
        return {"ContentLength": len(self.objects[Key])}

    def get_object(self, Bucket: str, Key: str, Range: str | None = None) -> dict[str, Any]:  # noqa: N803
        body = self.objects[Key]
        if Range is not None:
            start, _, end = Range.removeprefix("bytes=").partition("-")
            body = body[int(start) : int(end) + 1 if end else None]
        return {"Body": io.BytesIO(body), "ContentLength": len(body)}


def parquet(table: pa.Table, row_group_size: int) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(table, buffer, row_group_size=row_group_size)
    return buffer.getvalue()


def rows_table(first: int, n: int) -> pa.Table:
    return pa.table(
        {"id": pa.array(range(first, first + n), pa.int64()), "topic": [f"t{i}" for i in range(first, first + n)]}
    )


def test_a_runs_rows_read_from_its_files_equal_the_rows_read_from_one_object():
    # GIVEN 230 rows stored once as one Parquet object and once as four files (one of them empty) listed in an index,
    # each with small row groups
    bucket = Bucket()
    bucket.put(layout.records_key(RUN), parquet(rows_table(0, 230), 16))
    counts, first, listed = [100, 0, 50, 80], 0, []
    for position, n in enumerate(counts):
        key = layout.records_file_key(RUN, position)
        bucket.put(key, parquet(rows_table(first, n), 32))
        listed.append(RecordsFile(key=key, rows=n, source=f"s3://in/part-{position}.parquet"))
        first += n
    bucket.put(layout.records_index_key(RUN), json.dumps(RecordsIndex(files=listed).model_dump(mode="json")).encode())
    for first_row, count in [(0, 230), (90, 20), (95, 60), (150, 80), (100, 50), (229, 1)]:
        # WHEN a job's rows are read through the run's records key, in batches of 7 rows
        one = list(iter_run_rows(bucket, BUCKET, layout.records_key(RUN), first_row, count, batch_rows=7))
        files = list(iter_run_rows(bucket, BUCKET, layout.records_index_key(RUN), first_row, count, batch_rows=7))
        # THEN both give the same rows in the same order, in batches of at most 7 rows
        assert pa.Table.from_batches(files).equals(pa.Table.from_batches(one))
        assert pa.Table.from_batches(files).column("id").to_pylist() == list(range(first_row, first_row + count))
        assert all(batch.num_rows <= 7 for batch in files)


def test_a_range_the_files_do_not_hold_is_an_error_not_a_short_read():
    # GIVEN an index of one file of 10 rows
    bucket = Bucket()
    key = layout.records_file_key(RUN, 0)
    bucket.put(key, parquet(rows_table(0, 10), 4))
    index = RecordsIndex(files=[RecordsFile(key=key, rows=10, source="s3://in/a.parquet")])
    bucket.put(layout.records_index_key(RUN), json.dumps(index.model_dump(mode="json")).encode())
    # WHEN rows [5, 15) are asked for THEN it raises, naming the range and the rows there are
    with pytest.raises(RuntimeError, match=r"rows \[5, 15\) asked of .*records.json, whose files hold 10 rows"):
        list(iter_run_rows(bucket, BUCKET, layout.records_index_key(RUN), 5, 10))


def test_only_an_index_key_is_read_as_a_list_of_files():
    # GIVEN the two shapes' keys / WHEN asked which one lists files THEN only records.json does
    assert layout.is_records_index(layout.records_index_key(RUN))
    assert not layout.is_records_index(layout.records_key(RUN))
