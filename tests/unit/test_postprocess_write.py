"""How postprocess writes a job's output Parquet: row groups gathered from bounded batches, every row in order."""

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lambdas.postprocess import logic
from lambdas.postprocess.logic import JoinedOutput, write_output
from lambdas.shared.model_families import adapter_for_family


def batches(sizes: list[int]) -> list[pa.RecordBatch]:
    """Input batches of the given sizes, row numbers counting on across them."""
    out, start = [], 0
    for size in sizes:
        rows = list(range(start, start + size))
        out.append(pa.record_batch({"n": pa.array(rows, pa.int64()), "label": pa.array([f"l{r % 2}" for r in rows])}))
        start += size
    return out


def answered(count: int) -> JoinedOutput:
    joined = JoinedOutput(first_row=0, count=count)
    lines = [(str(i), None, {"content": [{"type": "text", "text": f"a{i}"}]}) for i in range(count)]
    joined.add_rows(lines, adapter_for_family("anthropic"))
    return joined


def test_small_batches_are_gathered_into_row_groups_of_about_row_group_bytes(tmp_path, monkeypatch):
    # GIVEN batches of 100, 100, 7, 100 and 50 rows (tiny ones, as at the records' row-group edges), and a row-group
    # size of about two 100-row batches
    monkeypatch.setattr(logic, "ROW_GROUP_BYTES", 2 * batches([100])[0].nbytes)
    joined = answered(357)
    # WHEN the output is written
    write_output(iter(batches([100, 100, 7, 100, 50])), joined, tmp_path / "out.parquet")
    # THEN the batches are gathered until the size is reached, the rest in a last group
    metadata = pq.ParquetFile(tmp_path / "out.parquet").metadata
    assert [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)] == [200, 157]
    # AND every row is there, in order, next to its own answer
    table = pq.read_table(tmp_path / "out.parquet")
    assert table.column("n").to_pylist() == list(range(357))
    assert table.column("response").to_pylist() == [f"a{i}" for i in range(357)]
    assert table.column_names == ["n", "label", "response", "error_code", "error_message"]


def test_the_answers_get_no_dictionary_and_the_other_columns_keep_one(tmp_path):
    # GIVEN a job whose answers all differ and whose input and error columns repeat
    joined = answered(300)
    # WHEN the output is written
    write_output(iter(batches([300])), joined, tmp_path / "out.parquet")
    # THEN only the answers' column chunk has no dictionary page
    group = pq.ParquetFile(tmp_path / "out.parquet").metadata.row_group(0)
    dictionary = {group.column(i).path_in_schema: group.column(i).has_dictionary_page for i in range(group.num_columns)}
    assert dictionary == {"n": True, "label": True, "response": False, "error_code": True, "error_message": True}


def test_a_records_file_shorter_than_the_job_is_an_error(tmp_path):
    # GIVEN a job of 357 rows whose records give only 300
    joined = answered(357)
    # WHEN the output is written THEN the shortfall is named, no row silently missing
    with pytest.raises(RuntimeError, match="read 300 input rows for a job of 357"):
        write_output(iter(batches([300])), joined, tmp_path / "out.parquet")


def test_a_failing_read_stops_the_write_and_is_raised(tmp_path):
    # GIVEN records whose reading fails after the first batch
    def failing():
        yield batches([100])[0]
        raise OSError("connection reset while reading records.parquet")

    # WHEN the output is written THEN the reader's error is raised as it is
    with pytest.raises(OSError, match="connection reset"):
        write_output(failing(), answered(200), tmp_path / "out.parquet")
