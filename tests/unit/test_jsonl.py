import json

import pyarrow as pa
import pytest

from lambdas.preprocess import jsonl
from lambdas.preprocess.logic import Plan, batch_lines, record_id, record_ids
from lambdas.shared.model_families import ADAPTERS, InferenceSettings, resolve
from prompt_templates import PromptTemplate, get_template

TRICKY = [
    "plain",
    'quotes " and \\ backslashes \\" mixed',
    "new\nline\r\ntab\tbell\x07nul\x00esc\x1b formfeed\x0c backspace\x08 vt\x0b us\x1f",
    "unicode: héllo ✓ 日本語 emoji 🦜 separators \u2028\u2029 del \x7f",
    "",
    "{braces} {{double}} }",
]


def test_escape_is_json_dumps_for_every_control_character():
    texts = [*TRICKY, "".join(chr(c) for c in range(0x20)), "x" * 10]
    assert jsonl.escape(pa.array(texts)).to_pylist() == [json.dumps(t, ensure_ascii=False)[1:-1] for t in texts]


@pytest.mark.parametrize("scan_bytes", [1, 5, 64])
def test_escape_finds_the_rows_to_escape_across_scan_chunks(monkeypatch, scan_bytes):
    # GIVEN texts scanned a few bytes at a time, characters to escape at the ends and middles of chunks, and a slice
    # (an offset into the buffers) of a longer array
    monkeypatch.setattr(jsonl, "_SCAN_BYTES", scan_bytes)
    texts = ["skip", *TRICKY, "abcd", '"', "long text without any of them", "tail\\", "ok", "é\n"]
    array = pa.array(texts).slice(1)
    # WHEN escaped THEN every row is exactly json.dumps's, the rows without escapes untouched
    assert jsonl.escape(array).to_pylist() == [json.dumps(t, ensure_ascii=False)[1:-1] for t in texts[1:]]


@pytest.mark.parametrize("first", [0, 7, 99_999, 99_999_999_990])
def test_vectorized_record_ids_are_the_row_numbers_zero_padded(first):
    # GIVEN runs of rows starting anywhere, some crossing a power of ten (up to the last 11-digit id and past it)
    # WHEN their record ids are built at once
    ids = record_ids(first, 20).to_pylist()
    # THEN each is record_id of its row: 11 digits, wider only past 99,999,999,999
    assert (
        ids == [record_id(row) for row in range(first, first + 20)] == [f"{r:011d}" for r in range(first, first + 20)]
    )
    assert len(ids[-1]) == (12 if first + 20 > 10**11 else 11)


@pytest.mark.parametrize("family", sorted(ADAPTERS))
def test_vectorized_lines_are_byte_identical_to_json_dumps(family):
    # GIVEN texts with every kind of character JSON must escape, and each family's adapter
    adapter = ADAPTERS[family]()
    settings = InferenceSettings(max_tokens=10, temperature=0.5, system='sys "prompt"\n')

    def build(text):
        return adapter.build_model_input(text, settings)

    shape = jsonl.LineShape.of(build)
    assert shape is not None
    # WHEN the lines are built with Arrow kernels
    escaped = jsonl.escape(pa.array(TRICKY, pa.string()))
    lines = jsonl.build_lines(record_ids(0, len(TRICKY)), [escaped], shape).to_pylist()
    # THEN they equal json.dumps line by line, and parse back to the same text
    expected = [
        json.dumps({"recordId": f"{i:011d}", "modelInput": build(t)}, ensure_ascii=False) + "\n"
        for i, t in enumerate(TRICKY)
    ]
    assert lines == expected


def test_batch_lines_render_the_template_like_the_row_renderer():
    # GIVEN columns of several types (Arrow's own casts differ from str() for floats and booleans) and tricky text
    batch = pa.RecordBatch.from_pydict(
        {
            "source": TRICKY,
            "i": list(range(6)),
            "f": [1.0, 1 / 3, -0.0, 1e300, 2.5, 0.1],
            "b": [True, False] * 3,
        }
    )
    template = PromptTemplate.parse('Q: "{source}"\n{i}|{f}|{b}|{{lit}} {"json": 1}')
    plan = Plan(model=resolve("anthropic.claude-3-haiku-20240307-v1:0"), template=template, max_per_job=100)
    # WHEN lines are built for the batch
    lines = batch_lines(batch, record_ids(0, 6), plan, InferenceSettings()).to_pylist()
    # THEN each holds exactly the row renderer's text
    assert [json.loads(line)["modelInput"]["messages"][0]["content"][0]["text"] for line in lines] == [
        template.render(row) for row in batch.to_pylist()
    ]


def test_a_template_without_placeholders_renders_the_same_text_for_every_row():
    batch = pa.RecordBatch.from_pydict({"record_id": ["00000000000", "00000000001"]})
    parts = jsonl.escaped_parts(PromptTemplate.parse('say "hi"'), batch)
    assert jsonl.join(parts, 2).to_pylist() == ['say \\"hi\\"'] * 2


def test_line_bytes_cover_every_line_in_order():
    lines = pa.array(["a\n", "bb\n", "ccc\n"]).slice(1)
    data, offsets = jsonl.line_bytes(lines)
    assert bytes(data[offsets[0] : offsets[-1]]) == b"bb\nccc\n"
    assert list(offsets - offsets[0]) == [0, 3, 7]


def test_an_adapter_that_repeats_the_text_falls_back():
    assert jsonl.LineShape.of(lambda text: {"a": text, "b": text}) is None


def test_shipped_templates_render_identically_both_ways():
    batch = pa.RecordBatch.from_pydict(
        {"topic": TRICKY, "input_text": TRICKY, "source": TRICKY, "record_id": [f"{i:011d}" for i in range(6)]}
    )
    for prompt_id in ("joke_about_topic", "sentiment_classifier", "question_answering"):
        template = get_template(prompt_id)
        expected = [jsonl.escape_literal(template.render(row)) for row in batch.to_pylist()]
        assert jsonl.join(jsonl.escaped_parts(template, batch), batch.num_rows).to_pylist() == expected
