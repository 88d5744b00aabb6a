"""CSV and JSONL sources read in small blocks: a row longer than a block restarts the read with bigger blocks."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pytest

from lambdas.preprocess import sources
from lambdas.shared.errors import InputValidationError

LONG_ROW = 1000  # the row whose text is longer than several blocks


class OneObjectS3:
    """The one S3 call a text source makes, on one object in memory; counts the GETs."""

    def __init__(self, body: bytes) -> None:
        self.body, self.gets = body, 0

    def get_object(self, *, Bucket: str, Key: str) -> dict[str, Any]:  # noqa: N803 - boto3's argument names
        self.gets += 1
        return {"Body": io.BytesIO(self.body)}


def rows(long_text: int) -> list[dict[str, Any]]:
    return [{"id": i, "text": "x" * long_text if i == LONG_ROW else f"t{i}"} for i in range(3000)]


def as_csv(records: list[dict[str, Any]]) -> bytes:
    return ("id,text\n" + "".join(f"{r['id']},{r['text']}\n" for r in records)).encode()


def as_jsonl(records: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in records).encode()


@pytest.mark.parametrize(("fmt", "encode"), [(sources.CSV, as_csv), (sources.JSONL, as_jsonl)], ids=["csv", "jsonl"])
def test_a_row_longer_than_a_block_restarts_the_read_with_bigger_blocks(monkeypatch, fmt, encode):
    # GIVEN 4 KiB blocks and 3,000 short rows, of which row 1,000 holds 20 KB of text (five blocks)
    monkeypatch.setattr(sources, "CSV_BLOCK_BYTES", 4096)
    s3 = OneObjectS3(encode(rows(20_000)))
    # WHEN the source is read
    table = pa.Table.from_batches(list(sources.TextSource(s3, "b", "k", "s3://b/k", fmt).batches()))
    # THEN the read started over once (32 KiB blocks), and every row came once, in order, with the first types
    assert s3.gets == 2
    assert table.column("id").to_pylist() == list(range(3000))
    assert len(table.column("text")[LONG_ROW].as_py()) == 20_000
    assert table.schema == pa.schema([("id", pa.int64()), ("text", pa.string())])


def test_short_rows_are_read_in_one_pass(monkeypatch):
    # GIVEN 4 KiB blocks and a CSV file of short rows, several blocks long
    monkeypatch.setattr(sources, "CSV_BLOCK_BYTES", 4096)
    s3 = OneObjectS3(as_csv(rows(10)))
    # WHEN it is read
    table = pa.Table.from_batches(list(sources.TextSource(s3, "b", "k", "s3://b/k", sources.CSV).batches()))
    # THEN one GET was enough and every row came once
    assert s3.gets == 1 and table.num_rows == 3000


def test_a_row_longer_than_the_biggest_block_is_a_clear_error(monkeypatch):
    # GIVEN blocks of 4 KiB that may grow to 32 KiB only, and a row of 300 KB
    monkeypatch.setattr(sources, "CSV_BLOCK_BYTES", 4096)
    monkeypatch.setattr(sources, "MAX_BLOCK_BYTES", 32_768)
    s3 = OneObjectS3(as_csv(rows(300_000)))
    # WHEN the source is read THEN the error names the file and the format, after bigger blocks were tried
    with pytest.raises(InputValidationError, match=r"s3_uri 's3://b/k' could not be read as CSV: .*straddl"):
        list(sources.TextSource(s3, "b", "k", "s3://b/k", sources.CSV).batches())
    assert s3.gets == 2  # 4 KiB, then 32 KiB


def test_parquet_batches_stay_near_batch_bytes_whatever_the_row_group_size(tmp_path, monkeypatch) -> None:
    # GIVEN batches of at most 1 MB, and a Parquet file of one row group of 5,000 rows of 1,000 bytes of text each its
    # own (~5 MB) and a short id column
    import pyarrow.parquet as pq

    monkeypatch.setattr(sources, "BATCH_BYTES", 1 << 20)
    path = tmp_path / "one-group.parquet"
    table = pa.table({"id": pa.array(range(5000), pa.int64()), "text": [f"{i:05d}" * 200 for i in range(5000)]})
    pq.write_table(table, path, row_group_size=5000)
    # WHEN the file is read in batches, every column and then the id column alone
    source = sources.LocalParquet(path, "one-group.parquet")
    every = list(source.batches())
    ids = list(source.column_batches(["id"]))
    # THEN every row comes once, in order, in batches of about 1 MB (the row group decoded a batch at a time, never
    # whole: a batch keeps its buffers alive while the stage works on its slices)
    assert pa.Table.from_batches(every).equals(table)
    assert len(every) >= 5 and max(batch.nbytes for batch in every) <= 1.1 * (1 << 20)
    # AND the id column alone is small: its rows come BATCH_ROWS at a time (here the whole group), as before
    assert [batch.num_rows for batch in ids] == [5000]


class CountingBody(io.BytesIO):
    """An S3 body in memory that counts the reads Arrow makes of it."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.reads = 0

    def read(self, size: int | None = -1) -> bytes:
        self.reads += 1
        return super().read(size)


def test_arrows_reads_stay_a_few_blocks_ahead_of_the_batches_taken() -> None:
    # GIVEN a CSV of 400 blocks of 1 KiB behind a gate of 4 blocks ahead, opened with Arrow's streaming CSV reader
    # (which reads up to 32 blocks ahead on its own thread)
    body = CountingBody(as_csv([{"id": i, "text": "y" * 100} for i in range(4000)]))
    gated = sources.GatedBody(body, ahead=4, grace=30.0)
    batches = gated.batches(iter(sources.CSV.open(gated, 1024, None)))
    try:
        # WHEN the stage has taken no batch yet
        assert gated.held.wait(timeout=30), "Arrow's reader never met the gate"
        # THEN Arrow's reader is held at 4 blocks read, not 32
        assert body.reads == 4
        # AND once the stage takes batches, every row arrives, in order
        assert [i for b in batches for i in b.column("id").to_pylist()] == list(range(4000))
    finally:
        gated.close()


def test_a_batch_that_needs_more_blocks_than_the_gate_allows_is_still_read() -> None:
    # GIVEN a gate of 1 block ahead over 12 blocks, and a reader that needs 3 blocks for each batch
    gated = sources.GatedBody(io.BytesIO(b"x" * 12), ahead=1, grace=0.01)

    def reader() -> Iterator[pa.RecordBatch]:
        while chunk := gated.read(1) + gated.read(1) + gated.read(1):
            yield pa.record_batch({"chunk": [chunk.decode()]})

    # WHEN the stage takes every batch
    taken = [b.column("chunk")[0].as_py() for b in gated.batches(reader())]
    # THEN every block arrives: a read held while the stage waits is let through once nothing moves
    assert taken == ["xxx"] * 4


def test_closing_the_body_lets_a_held_read_return_as_at_the_end() -> None:
    # GIVEN a gate of 2 blocks whose reader is held (a batch taken, none asked for)
    body = CountingBody(as_csv([{"id": i, "text": "w" * 100} for i in range(2000)]))
    gated = sources.GatedBody(body, ahead=2, grace=30.0)
    batches = gated.batches(iter(sources.CSV.open(gated, 1024, None)))
    next(batches)
    assert gated.held.wait(timeout=30)
    # WHEN the source closes it (the pass stopped early)
    gated.close()
    # THEN a read returns what is left as nothing, and the body is closed
    assert gated.read(1024) == b"" and body.closed
