"""Vectorized JSONL building: Bedrock batch records for a whole Arrow batch at once, byte-identical to json.dumps.

Every record of a run has the same ``modelInput`` shape except for the prompt text, so the adapter's JSON is built
once with a sentinel in place of the text and split into a prefix and a suffix. Each line is then
``{"recordId": "<id>", "modelInput": <prefix><escaped text><suffix>}`` joined by Arrow compute kernels.

JSON escaping commutes with concatenation, so a prompt is escaped piece by piece: the template's literal parts once
in Python, the column values with Arrow string kernels, touching only the rows that hold a character to escape.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from prompt_templates import PromptTemplate

_SENTINEL = "\u2063PROMPT\u2063"  # invisible separator: never produced by an adapter itself
# What json.dumps(ensure_ascii=False) escapes: these short forms ("\\" first, so later escapes stay intact) ...
_SHORT_ESCAPES = (
    ("\\", "\\\\"),
    ('"', '\\"'),
    ("\n", "\\n"),
    ("\r", "\\r"),
    ("\t", "\\t"),
    ("\b", "\\b"),
    ("\f", "\\f"),
)
# ... and every other control character as \u00xx.
_OTHER_CONTROLS = [chr(c) for c in range(0x20) if chr(c) not in "\n\r\t\b\f"]
_NEEDS_UNICODE_ESCAPE = r"[\x00-\x07\x0b\x0e-\x1f]"


@dataclass(frozen=True)
class LineShape:
    """``{"recordId": "`` + id + ``", "modelInput": `` + prefix + escaped text + suffix + ``}\\n``."""

    prefix: str
    suffix: str

    @classmethod
    def of(cls, build: Callable[[str], dict[str, Any]]) -> LineShape | None:
        """Split the adapter's JSON around the text; None when the text does not appear exactly once."""
        parts = json.dumps(build(_SENTINEL), ensure_ascii=False).split(_SENTINEL)
        if len(parts) != 2:
            return None
        return cls(prefix=parts[0], suffix=parts[1])


def escape_literal(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)[1:-1]


_SCAN_BYTES = 1 << 20  # bytes scanned at a time for characters to escape: the temporaries stay in the CPU's caches


def _rows_needing_escape(texts: pa.Array) -> np.ndarray:
    """Boolean mask of the rows holding '"', '\\' or a control character: SIMD passes over the UTF-8 bytes, a
    megabyte at a time into two reused buffers (temporaries the size of a whole column were faulted in afresh for
    every batch: three times the CPU)."""
    data = texts.buffers()[2]
    offsets = np.frombuffer(texts.buffers()[1], dtype=np.int32)[texts.offset : texts.offset + len(texts) + 1]
    mask = np.zeros(len(texts), dtype=bool)
    if data is None or offsets[-1] == offsets[0]:
        return mask
    raw = np.frombuffer(data, dtype=np.uint8)[offsets[0] : offsets[-1]]
    hit, other = np.empty(min(len(raw), _SCAN_BYTES), dtype=bool), np.empty(min(len(raw), _SCAN_BYTES), dtype=bool)
    ends = offsets[1:] - offsets[0]
    for start in range(0, len(raw), _SCAN_BYTES):
        chunk = raw[start : start + _SCAN_BYTES]
        found, also = hit[: len(chunk)], other[: len(chunk)]
        np.less(chunk, 0x20, out=found)
        np.equal(chunk, 0x22, out=also)
        found |= also
        np.equal(chunk, 0x5C, out=also)
        found |= also
        if found.any():
            mask[np.searchsorted(ends, np.flatnonzero(found) + start, side="right")] = True
    return mask


def escape(texts: pa.Array) -> pa.Array:
    """JSON-escape every string (without the surrounding quotes), exactly as json.dumps(ensure_ascii=False) does.

    One pass finds the rows holding any character to escape (usually few); only those are rewritten.
    """
    if texts.null_count:
        raise ValueError("cannot escape null strings")
    needs = _rows_needing_escape(texts)
    count = int(needs.sum())
    if count == 0:
        return texts
    mask = pa.array(needs)
    subset = texts if count == len(texts) else pc.filter(texts, mask)
    for raw, escaped in _SHORT_ESCAPES:
        subset = pc.replace_substring(subset, raw, escaped)
    rare = pc.match_substring_regex(subset, _NEEDS_UNICODE_ESCAPE)
    if pc.any(rare).as_py():
        fixed = pc.filter(subset, rare)
        for char in _OTHER_CONTROLS:
            fixed = pc.replace_substring(fixed, char, f"\\u{ord(char):04x}")
        subset = pc.replace_with_mask(subset, rare, fixed)
    return subset if count == len(texts) else pc.replace_with_mask(texts, mask, subset)


def as_text(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    """Column values as Python's ``str()`` would write them (Arrow's own cast differs for floats and booleans)."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    kind = column.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_integer(kind):
        return column.cast(pa.string())
    return pa.array([str(value) for value in column.to_pylist()], pa.string())


def escaped_parts(template: PromptTemplate, batch: pa.RecordBatch) -> list[str | pa.Array]:
    """The JSON-escaped pieces of the template's rendering: escaped literals and escaped column values, in order."""
    parts: list[str | pa.Array] = []
    for index, literal in enumerate(template.literals):
        if literal:
            parts.append(escape_literal(literal))
        if index < len(template.fields):
            parts.append(escape(as_text(batch.column(template.fields[index]))))
    return parts


def join(parts: list[str | pa.Array], num_rows: int) -> pa.Array:
    """Concatenate strings and string arrays element-wise into one array of ``num_rows``."""
    if not any(isinstance(part, pa.Array) for part in parts):
        return pa.array(["".join(str(part) for part in parts)] * num_rows, pa.string())
    return pc.binary_join_element_wise(*parts, "")


def build_lines(record_ids: pa.Array, escaped_text: list[str | pa.Array], shape: LineShape) -> pa.Array:
    """One JSONL line (with its newline) per row, in one join: id, modelInput prefix, escaped text, suffix."""
    parts = ['{"recordId": "', record_ids, '", "modelInput": ' + shape.prefix, *escaped_text, shape.suffix + "}\n"]
    return join(parts, len(record_ids))


def line_bytes(lines: pa.Array) -> tuple[memoryview, np.ndarray]:
    """The UTF-8 bytes of the lines back to back (a view, no copy) and each line's start offset (plus the end)."""
    if lines.null_count:
        raise ValueError("JSONL lines cannot be null")
    offsets_buffer, data_buffer = lines.buffers()[1], lines.buffers()[2]
    offsets = np.frombuffer(offsets_buffer, dtype=np.int32)[lines.offset : lines.offset + len(lines) + 1]
    data = memoryview(data_buffer) if data_buffer is not None else memoryview(b"")
    return data, offsets
