"""The vectorized output readers and the row-by-row adapters must agree on every kind of output line."""

import json

import numpy as np
import pyarrow as pa
import pytest

from lambdas.postprocess.columnar import READERS
from lambdas.postprocess.logic import JoinedOutput
from lambdas.shared.model_families import adapter_for_family

SOURCE = "s3://bucket/runs/r/bedrock-output/job/records.jsonl.out"
TEXT_OUTPUTS = {
    "anthropic": lambda text: {"content": [{"type": "text", "text": text[:3]}, {"type": "text", "text": text[3:]}]},
    "nova": lambda text: {"output": {"message": {"role": "assistant", "content": [{"text": text}]}}},
    "converse": lambda text: {"output": {"message": {"role": "assistant", "content": [{"text": text}]}}},
}


def output_lines(family: str) -> list[dict]:
    """Good lines in shuffled order, a record error, a duplicate, an id outside the job, an unreadable output."""
    if family in TEXT_OUTPUTS:
        make = TEXT_OUTPUTS[family]
        good = [make(f'answer "{i}"\n✓') for i in range(10)]
    else:
        good = [{"embedding": [i / 10, 1.0, -0.5]} for i in range(10)]
    lines = [{"recordId": f"{100 + i:011d}", "modelOutput": good[i]} for i in (3, 1, 0, 2, 4, 6, 5)]
    lines.append({"recordId": f"{107:011d}", "error": {"errorCode": 400, "errorMessage": "Malformed input"}})
    lines.append({"recordId": f"{101:011d}", "modelOutput": good[9]})  # duplicate: the first line wins
    lines.append({"recordId": f"{999:011d}", "modelOutput": good[9]})  # not this job's record
    lines.append({"recordId": f"{108:011d}", "modelOutput": {"unexpected": True}})
    return lines  # record 109 has no line at all


def join(tmp_path, family: str, lines: list[dict], *, vectorized: bool) -> JoinedOutput:
    kind = "text" if family in TEXT_OUTPUTS else "embedding"
    joined = JoinedOutput(first_row=100, count=10, kind=kind)
    path = tmp_path / "out.jsonl.out"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    if vectorized:
        joined.add_file(path, family, adapter_for_family(family), SOURCE)
    else:
        joined.add_rows(
            [(line.get("recordId"), line.get("error"), line.get("modelOutput")) for line in lines],
            adapter_for_family(family),
        )
    joined.fill_missing("MISSING_OUTPUT", "no line")
    return joined


@pytest.mark.parametrize("family", sorted(READERS))
def test_vectorized_reader_agrees_with_the_adapter(tmp_path, family):
    # GIVEN the same output lines read both ways
    lines = output_lines(family)
    fast = join(tmp_path, family, lines, vectorized=True)
    slow = join(tmp_path, family, lines, vectorized=False)
    # WHEN the columns are assembled THEN values and codes agree row by row
    fast_values, fast_codes, _ = fast.columns()
    slow_values, slow_codes, _ = slow.columns()
    assert fast_codes.to_pylist() == slow_codes.to_pylist()
    assert fast_values.equals(slow_values)
    # AND the expected rows got results, the error, the unreadable output and the missing code
    assert fast_codes.to_pylist() == [None] * 7 + ["400", "UNPARSABLE_OUTPUT", "MISSING_OUTPUT"]
    assert fast.unmatched_lines == slow.unmatched_lines == 2
    if family in TEXT_OUTPUTS:
        assert fast_values.to_pylist()[1] == 'answer "1"\n✓'


def test_a_corrupt_line_sends_the_file_down_the_line_by_line_path(tmp_path):
    # GIVEN an output file with a good line and a line cut short after its recordId
    path = tmp_path / "out.jsonl.out"
    good = json.dumps({"recordId": f"{100:011d}", "modelOutput": {"content": [{"type": "text", "text": "ok"}]}})
    path.write_text(good + "\n" + '{"recordId": "00000000101", "modelOut' + "\n")
    joined = JoinedOutput(first_row=100, count=2, kind="text")
    # WHEN it is joined (Arrow's reader fails on it, so the lines are read one by one)
    joined.add_file(path, "anthropic", adapter_for_family("anthropic"), SOURCE)
    joined.fill_missing("NOT_PROCESSED", "job partially completed")
    # THEN the good line is read, and the garbled line's record is UNPARSABLE_OUTPUT with where to find it
    values, codes, messages = joined.columns()
    assert values.to_pylist() == ["ok", None] and codes.to_pylist() == [None, "UNPARSABLE_OUTPUT"]
    message = messages.to_pylist()[1]
    assert "record 00000000101 could not be parsed" in message and message.endswith(SOURCE)
    assert joined.unmatched_lines == 0


@pytest.mark.parametrize(
    "garbled",
    [
        b'{"recordId": "0000000010',  # cut inside the recordId: its closing quote is gone
        b'{"recordI',
        b'{"modelOutput": {"content": [], "recordId": "00000000101"',  # the id is not at the start
        b'"recordId": "00000000101", "modelOutput"',  # no opening brace
        b'{"recordId": "00000-00101", "modelOutput"',  # not alphanumeric
        b"\x00\xff garbage",
    ],
)
def test_a_garbled_line_whose_record_id_cannot_be_read_stays_unmatched(garbled):
    # GIVEN one garbled line whose recordId cannot be read with certainty at its start
    joined = JoinedOutput(first_row=100, count=2, kind="text")
    # WHEN its lines are joined and the rows without a line filled
    joined.add_lines([garbled], adapter_for_family("anthropic"), SOURCE)
    joined.fill_missing("MISSING_OUTPUT", "no line")
    # THEN no record is blamed on it: both rows have no output (and are resubmitted), the line is unmatched
    assert joined.columns()[1].to_pylist() == ["MISSING_OUTPUT", "MISSING_OUTPUT"]
    assert joined.unmatched_lines == 1


def test_a_garbled_line_reads_its_record_id_whatever_the_spacing_and_keeps_the_first_line_rule():
    # GIVEN a garbled line with spaces around its recordId, then a valid line for the same record
    valid = json.dumps({"recordId": "00000000100", "modelOutput": {"content": []}}).encode()
    lines = [b'  { "recordId" :"00000000100" , "modelInp', valid]
    joined = JoinedOutput(first_row=100, count=1, kind="text")
    # WHEN joined
    joined.add_lines(lines, adapter_for_family("anthropic"), SOURCE)
    # THEN the record is UNPARSABLE_OUTPUT (its first line wins) and the second line is unmatched
    assert joined.columns()[1].to_pylist() == ["UNPARSABLE_OUTPUT"] and joined.unmatched_lines == 1


def test_embeddings_come_out_as_float32_lists(tmp_path):
    joined = join(tmp_path, "titan-embed-text-v2", output_lines("titan-embed-text-v2"), vectorized=True)
    assert joined.columns()[0].type == pa.list_(pa.float32())


@pytest.mark.parametrize("vectorized", [True, False])
def test_a_resubmission_job_joins_on_its_scattered_row_numbers(tmp_path, vectorized):
    # GIVEN a resubmission job of rows 5, 40, 41 and 900 (gathered from several planned jobs), whose output has a
    # line for 900 and 5 (in that order), an error for 41, and lines for rows that are not the job's (6, 899, 901)
    rows = np.array([5, 40, 41, 900])
    lines = [
        {"recordId": f"{900:011d}", "modelOutput": {"content": [{"type": "text", "text": "nine hundred"}]}},
        {"recordId": f"{5:011d}", "modelOutput": {"content": [{"type": "text", "text": "five"}]}},
        {"recordId": f"{41:011d}", "error": {"errorCode": 429, "errorMessage": "throttled"}},
    ]
    lines += [{"recordId": f"{i:011d}", "modelOutput": {"content": []}} for i in (6, 899, 901)]
    path = tmp_path / "out.jsonl.out"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    joined = JoinedOutput.for_rows(rows, kind="text")
    # WHEN the output is joined and the rows without a line are filled
    if vectorized:
        joined.add_file(path, "anthropic", adapter_for_family("anthropic"), SOURCE)
    else:
        joined.add_lines(path.read_bytes().splitlines(), adapter_for_family("anthropic"), SOURCE)
    joined.fill_missing("MISSING_OUTPUT", "no line")
    # THEN slot i holds the result of the i-th row number, and the other jobs' lines are not matched
    values, codes, _ = joined.columns()
    assert values.to_pylist() == ["five", None, None, "nine hundred"]
    assert codes.to_pylist() == [None, "MISSING_OUTPUT", "429", None]
    assert joined.unmatched_lines == 3


def test_resubmission_rows_must_be_ascending_and_unique():
    with pytest.raises(ValueError, match="ascending"):
        JoinedOutput.for_rows(np.array([3, 2]))
    with pytest.raises(ValueError, match="ascending"):
        JoinedOutput.for_rows(np.array([2, 2]))
    assert JoinedOutput.for_rows(np.array([], dtype=np.int64)).columns()[1].to_pylist() == []


def documented_lines(family: str) -> list[dict]:
    """Lines of the documented shape only: answers in shuffled order, a record error, a duplicate, an id outside the
    job, each with the ``modelInput`` Bedrock echoes (record 109 has no line)."""
    return [line for line in output_lines(family) if line["recordId"] != f"{108:011d}"]


def with_model_input(lines: list[dict]) -> list[dict]:
    """The lines with an echoed ``modelInput`` whose shape changes from line to line (Arrow cannot infer one type)."""
    inputs = [{"messages": [{"role": "user", "content": [{"type": "text", "text": "q"}]}]}, {"inputText": 7}, "q"]
    return [{"recordId": line["recordId"], "modelInput": inputs[i % 3], **line} for i, line in enumerate(lines)]


@pytest.mark.parametrize("family", sorted(READERS))
def test_documented_lines_are_read_by_the_fast_path_and_agree_with_the_adapter(tmp_path, family):
    # GIVEN output lines of the documented shape, whose echoed modelInput has no single type
    lines = with_model_input(documented_lines(family))
    path = tmp_path / "out.jsonl.out"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    fast = JoinedOutput(first_row=100, count=10, kind="text" if family in TEXT_OUTPUTS else "embedding")
    # WHEN the fast path reads them (Arrow parses recordId, the answer's fields and error, nothing else)
    taken = fast.add_documented(path, READERS[family])
    fast.fill_missing("MISSING_OUTPUT", "no line")
    # THEN it takes them, and every row has what the adapter gives it row by row
    slow = join(tmp_path, family, lines, vectorized=False)
    assert taken is True
    assert fast.columns()[1].to_pylist() == slow.columns()[1].to_pylist()
    assert fast.columns()[0].equals(slow.columns()[0])
    assert fast.columns()[1].to_pylist() == [None] * 7 + ["400", "MISSING_OUTPUT", "MISSING_OUTPUT"]
    assert fast.unmatched_lines == slow.unmatched_lines == 2


@pytest.mark.parametrize(
    ("line", "code"),
    [
        ({"recordId": f"{100:011d}", "error": {"errorCode": "ThrottlingException", "errorMessage": "slow"}}, "Thr"),
        ({"recordId": f"{100:011d}", "modelOutput": {"unexpected": True}}, "UNPARSABLE_OUTPUT"),
        ({"recordId": f"{100:011d}", "modelOutput": {"content": "a string, not blocks"}}, "UNPARSABLE_OUTPUT"),
    ],
)
def test_a_line_off_the_documented_shape_sends_the_file_down_the_general_path(tmp_path, line, code):
    # GIVEN a good line and one off the documented shape (a code that is not a number, an answer without content)
    good = {"recordId": f"{101:011d}", "modelOutput": {"content": [{"type": "text", "text": "ok"}]}}
    path = tmp_path / "out.jsonl.out"
    path.write_text(json.dumps(line) + "\n" + json.dumps(good) + "\n")
    joined = JoinedOutput(first_row=100, count=2, kind="text")
    # WHEN the fast path tries it THEN it declines, having added nothing
    assert joined.add_documented(path, READERS["anthropic"]) is False
    assert joined.columns()[1].to_pylist() == [None, None] and joined.unmatched_lines == 0
    # AND the file as a whole still gives each row its answer or its code
    joined.add_file(path, "anthropic", adapter_for_family("anthropic"), SOURCE)
    values, codes, _ = joined.columns()
    assert values.to_pylist() == [None, "ok"]
    assert codes.to_pylist()[0].startswith(code) and codes.to_pylist()[1] is None


def test_one_block_answers_and_answers_of_other_blocks_read_as_the_adapter_reads_them(tmp_path):
    # GIVEN Anthropic answers of one text block each, then one whose only block is not text
    contents: list[list[dict]] = [[{"type": "text", "text": f"answer {i}"}] for i in range(3)]
    contents.append([{"type": "tool_use", "id": "t", "name": "f", "input": {}}])
    lines = [{"recordId": f"{100 + i:011d}", "modelOutput": {"content": c}} for i, c in enumerate(contents)]
    # WHEN they are read by the vectorized reader and by the adapter
    fast = join(tmp_path, "anthropic", lines, vectorized=True)
    slow = join(tmp_path, "anthropic", lines, vectorized=False)
    # THEN both give the texts, and an empty text for the answer without one
    assert fast.columns()[0].to_pylist()[:4] == ["answer 0", "answer 1", "answer 2", ""]
    assert fast.columns()[0].equals(slow.columns()[0])
