"""Preprocess staging keeps nothing per row in memory: line offsets live in a local file, read with plain reads."""

from __future__ import annotations

import platform
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from lambdas.preprocess import logic
from lambdas.shared.model_families import InferenceSettings, resolve
from prompt_templates import get_template


@dataclass
class Batches:
    """A source of in-memory batches (what the S3 and Hugging Face sources yield)."""

    tables: list[pa.Table]
    description: str = "test input"
    records_object: tuple[str, str] | None = None

    def batches(self) -> Iterator[pa.RecordBatch]:
        for table in self.tables:
            yield from table.to_batches()


def plan() -> logic.Plan:
    return logic.Plan(
        model=resolve("anthropic.claude-3-haiku-20240307-v1:0"),
        template=get_template("joke_about_topic"),
        max_per_job=100,
    )


def test_line_offsets_are_a_local_file_and_match_the_lines(tmp_path):
    # GIVEN 500 rows in three batches, one row in the second batch much longer than the others
    topics = [f"topic {i}" for i in range(500)]
    topics[260] = "x" * 5_000
    source = Batches([pa.table({"topic": topics[a:b]}) for a, b in ((0, 200), (200, 400), (400, 500))])
    # WHEN the rows are staged
    staged = logic.stage(source, plan(), InferenceSettings(), tmp_path)
    # THEN the offsets are read from a file on disk (8 bytes a row), not held in memory
    assert isinstance(staged.line_ends, logic.LineEnds)
    assert staged.line_ends.path.stat().st_size == 500 * 8
    assert staged.rows == 500
    # AND each row's byte range is exactly its line in the JSONL file
    data = staged.lines_path.read_bytes()
    lines = data.splitlines(keepends=True)
    assert len(lines) == 500 and int(staged.line_ends[-1]) == len(data)
    for row in (0, 199, 200, 260, 499):
        start, end = staged.byte_range(row, 1)
        assert data[start:end] == lines[row]
    # AND the longest line was found while staging: row 260, with its length in bytes
    assert staged.biggest_row == (260, len(lines[260]))
    # AND an array of rows reads an array of offsets, negative rows count from the end
    assert staged.line_ends[np.array([0, 499])].tolist() == [len(lines[0]), len(data)]
    assert staged.line_ends[-1] == len(data)
    # AND the split reads only job boundaries of the file: 5 jobs of 100 rows tile the lines
    jobs = logic.plan_jobs(staged, logic.fit_job_sizes(staged, 100), "run")
    assert [job.first_row for job in jobs] == [0, 100, 200, 300, 400]
    assert sum(job.size_bytes for job in jobs) == len(data)


def test_big_blocks_are_staged_in_slices_of_batch_rows():
    # GIVEN one block of 150,000 short rows (what one 16 MB CSV block holds) and an empty block
    block = pa.record_batch({"id": pa.array(range(150_000), pa.int64())})
    empty = block.slice(0, 0)
    # WHEN it is rebatched to 65,536 rows a batch
    batches = list(logic.rebatched(iter([block, empty]), rows=65_536))
    # THEN every row comes once, in order, in batches of at most 65,536 rows (the empty block is dropped: rows wait)
    assert [batch.num_rows for batch in batches] == [65_536, 65_536, 18_928]
    assert pa.Table.from_batches(batches).column("id").to_pylist() == list(range(150_000))


def test_big_batches_are_cut_by_bytes_and_small_ones_joined():
    # GIVEN a batch of 1,000 rows of 1 KB text, then 40 blocks of 10 rows, then a block with another schema
    text = pa.array(["x" * 1000] * 1000)
    big = pa.record_batch({"id": pa.array(range(1000), pa.int64()), "text": text})
    small = [big.slice(0, 10) for _ in range(40)]
    other = pa.record_batch({"id": pa.array(["a"] * 5)})
    # WHEN rebatched to at most 100 KB and 300 rows a batch
    batches = list(logic.rebatched(iter([big, *small, other]), rows=300, nbytes=100_000))
    # THEN the big batch is cut by bytes (about 98 rows a slice), small blocks are joined up to the limits, and the
    # batch with another schema comes alone; no batch passes the limits and every row comes once, in order
    sizes = [batch.num_rows for batch in batches]
    assert sizes[:10] == [98] * 10 and sum(sizes[:-1]) == 1400 and sizes[-1] == 5
    assert all(batch.nbytes <= 100_000 and batch.num_rows <= 300 for batch in batches)
    ids = pa.Table.from_batches(batches[:-1]).column("id").to_pylist()
    assert ids == list(range(1000)) + list(range(10)) * 40
    assert batches[-1].schema == other.schema


def test_rebatching_never_joins_batches_of_different_schemas():
    # GIVEN a block of ints, then an empty first block of a source, then blocks whose id became text
    ints = pa.record_batch({"id": pa.array([1, 2, 3], pa.int64())})
    texts = pa.record_batch({"id": pa.array(["4", "5"], pa.string())})
    # WHEN they are rebatched
    batches = list(logic.rebatched(iter([texts.slice(0, 0), ints, texts, texts]), rows=4))
    # THEN the empty block passes (its schema is checked), the ints stay apart from the texts (stage names the change)
    assert [(b.num_rows, b.schema.field("id").type) for b in batches] == [
        (0, pa.string()),
        (3, pa.int64()),
        (4, pa.string()),
    ]


def test_free_heap_memory_is_released_every_few_batches_of_a_long_input(tmp_path, monkeypatch):
    # GIVEN an input of 20 batches (each rebatched on its own: 70,000 rows is more than a batch holds)
    released: list[int] = []

    def release() -> bool:
        released.append(1)
        return True

    monkeypatch.setattr(logic, "release_free_memory", release)
    source = Batches([pa.table({"topic": [f"topic {i}" for i in range(70_000 * 10)]})])
    # WHEN the rows are checked as preprocess reads them
    batches = list(logic.checked(source, plan()))
    # THEN glibc's free pages are given back once every TRIM_EVERY_BATCHES batches, and no row is lost
    assert sum(batch.num_rows for batch in batches) == 700_000
    assert len(released) == len(batches) // logic.TRIM_EVERY_BATCHES > 0


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_release_free_memory_calls_glibc_when_the_process_runs_on_it():
    # GIVEN this process (Linux with glibc in CI and in Lambda's image)
    from lambdas.shared.allocator import release_free_memory

    # WHEN free memory is released THEN glibc took the call (elsewhere the call does nothing and says so)
    assert release_free_memory() is True


def test_arrow_pool_switches_arrows_default_pool_for_the_block_only():
    # GIVEN Arrow's default pool as the process starts (the image's: system)
    import pyarrow as pa

    from lambdas.shared.allocator import arrow_pool

    before = pa.default_memory_pool().backend_name
    # WHEN a buffer is allocated inside arrow_pool("mimalloc") and kept past the block
    with arrow_pool("mimalloc") as backend:
        inside = pa.default_memory_pool().backend_name
        kept = pa.allocate_buffer(1 << 20)
        held = pa.mimalloc_memory_pool().bytes_allocated()
    # THEN the block ran on mimalloc (this pyarrow has it, as the image's does), the buffer came from it, and the
    # process's pool is the one before again
    assert backend == inside == "mimalloc" and held >= 1 << 20
    assert pa.default_memory_pool().backend_name == before
    # AND the buffer goes back to the pool it came from when freed
    del kept
    assert pa.mimalloc_memory_pool().bytes_allocated() == held - (1 << 20)


def test_arrow_pool_keeps_the_pool_where_pyarrow_lacks_the_backend(monkeypatch):
    # GIVEN a pyarrow built without mimalloc (its pool function raises NotImplementedError, as pyarrow documents)
    import pyarrow as pa

    from lambdas.shared.allocator import arrow_pool

    def missing() -> None:
        raise NotImplementedError("mimalloc support is not enabled")

    monkeypatch.setattr(pa, "mimalloc_memory_pool", missing)
    before = pa.default_memory_pool().backend_name
    # WHEN the block runs THEN it runs on the pool there was, and says so
    with arrow_pool("mimalloc") as backend:
        assert backend == pa.default_memory_pool().backend_name == before


class Pulls:
    """Batches counted as the reader pulls them; each pull records how many batches the caller had asked for then."""

    def __init__(self, count: int) -> None:
        self.count, self.asked = count, 0
        self.seen: list[int] = []  # seen[j]: how many batches the caller had asked for when batch j was pulled
        self.pulled_past_slot = threading.Event()

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        for index in range(self.count):
            self.seen.append(self.asked)
            if index > self.asked:  # a batch more than the caller asked for: the read-ahead's one slot
                self.pulled_past_slot.set()
            yield pa.record_batch({"n": [index]})


def test_the_read_ahead_holds_one_batch_the_caller_has_not_taken_the_one_being_read_included():
    # GIVEN 6 batches read ahead with one slot, and a caller that holds each batch a while (as staging does)
    source = Pulls(6)
    batches = logic.prefetched(iter(source), depth=1)
    got = []
    # WHEN the caller asks for every batch, one at a time
    for _ in range(6):
        source.asked += 1
        got.append(next(batches)["n"][0].as_py())
        source.pulled_past_slot.wait(0.2)  # time for a reader without slots to run ahead (it is never needed)
    # THEN every batch came once, in order
    assert got == [0, 1, 2, 3, 4, 5]
    # AND batch j was pulled only once the caller had taken batch j - 1: one ahead at most, never two
    assert all(asked >= index for index, asked in enumerate(source.seen))
    assert not source.pulled_past_slot.is_set()


def test_a_caller_that_stops_early_ends_the_reader_without_reading_on():
    # GIVEN 100 batches read ahead with one slot
    source = Pulls(100)
    batches = logic.prefetched(iter(source), depth=1)
    # WHEN the caller takes one batch and stops
    source.asked += 1
    assert next(batches)["n"][0].as_py() == 0
    batches.close()
    # THEN the reader thread has ended, having pulled at most the batch after the one taken
    assert not any(thread.name == "preprocess-reader" for thread in threading.enumerate())
    assert len(source.seen) <= 2


def test_an_error_of_the_source_is_raised_to_the_caller():
    # GIVEN a source that fails after its first batch
    def failing() -> Iterator[pa.RecordBatch]:
        yield pa.record_batch({"n": [0]})
        raise ValueError("broken block")

    # WHEN the caller reads it ahead
    batches = logic.prefetched(failing())
    # THEN the first batch arrives, then the source's own error
    assert next(batches)["n"][0].as_py() == 0
    with pytest.raises(ValueError, match="broken block"):
        next(batches)


@dataclass
class Columns(Batches):
    """A source whose columns can be read alone (as a Parquet file's): decoded batches of 65,536 rows."""

    def schema(self) -> pa.Schema:
        return self.tables[0].schema

    def column_batches(self, columns: Any) -> Iterator[pa.RecordBatch]:
        for table in self.tables:
            yield from table.select(list(columns)).to_batches(max_chunksize=65_536)


def test_a_pass_that_builds_only_the_lines_takes_batches_of_text_batch_rows():
    # GIVEN a source whose columns can be read alone, 200,000 rows decoded 65,536 at a time
    source = Columns([pa.table({"topic": [f"topic {i}" for i in range(200_000)], "other": range(200_000)})])
    # WHEN it is checked for the lines alone (the records copied), and for the whole rows
    text_only = list(logic.checked(source, plan(), text_only=True))
    whole = list(logic.checked(source, plan()))
    # THEN the lines-only pass never holds more than TEXT_BATCH_ROWS rows a batch, the whole rows up to BATCH_ROWS
    assert max(batch.num_rows for batch in text_only) == logic.TEXT_BATCH_ROWS < logic.BATCH_ROWS
    assert max(batch.num_rows for batch in whole) == logic.BATCH_ROWS
    # AND every row comes once, in order, with the template's column only
    topics = pa.Table.from_batches(text_only).column("topic").to_pylist()
    assert topics == [f"topic {i}" for i in range(200_000)] and text_only[0].schema.names == ["topic"]


def test_a_pass_that_uploads_only_the_job_files_takes_parts_of_s3s_minimum_from_a_pool_of_five():
    # GIVEN the three kinds of planned pass: the records copied server-side (a Parquet object), the records written
    # by the pass, a hub file copied into the records' upload
    from lambdas.preprocess.uploads import PART_BYTES, PARTS_IN_FLIGHT

    # WHEN each gets the part buffers of its uploads
    alone = logic.part_buffers(write_records=False, copied=False)
    with_records = logic.part_buffers(write_records=True, copied=False)
    with_copy = logic.part_buffers(write_records=False, copied=True)
    # THEN the job files alone take parts of 5 MiB (S3's smallest but the last), at most one being filled and
    # PARTS_IN_FLIGHT in flight: 25 MiB of buffers at most, whatever the run's length
    assert (alone.part_bytes, alone.limit) == (5 << 20, PARTS_IN_FLIGHT + 1)
    # AND a pool shared with the records' upload keeps 8 MiB parts (records.parquet may need all 10,000 parts) and
    # one buffer being filled per upload
    assert (with_records.part_bytes, with_records.limit) == (PART_BYTES, PARTS_IN_FLIGHT + 2)
    assert (with_copy.part_bytes, with_copy.limit) == (PART_BYTES, PARTS_IN_FLIGHT + 2)
