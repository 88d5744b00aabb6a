"""Vectorized ``modelOutput`` readers for the common families, over the columns Arrow's JSON reader produces.

Each reader takes the ``modelOutput`` column (a struct array, null where a line had none) and returns the values
(string, or list<float32> for embeddings) with nulls where the output could not be read. Families without a reader
here are parsed row by row by their adapter (``ModelAdapter.parse_model_output``), which is always correct; these
readers only make the frequent cases fast, and tests check that both give the same result.

Each reader also declares ``output_type``: the part of ``modelOutput`` it reads. Postprocess gives Arrow's JSON
reader that type (``OUTPUT_LINE``), so it parses nothing else: not ``modelInput`` (the whole prompt, echoed on every
line), not the usage or stop fields. A line whose fields do not fit the type makes Arrow's reader fail, and the file
goes down the general path (types inferred, the adapter where the shape is unexpected).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from lambdas.shared.run_files import EMBEDDING_TYPE

Read = Callable[[pa.Array], pa.Array]


@dataclass(frozen=True)
class ColumnReader:
    """How one family's ``modelOutput`` is read: the fields parsed (``output_type``), and the values from them."""

    output_type: pa.StructType
    read: Read

    @property
    def line_schema(self) -> pa.Schema:
        """The output line's fields postprocess reads, for Arrow's JSON reader (every other field is skipped).
        ``errorCode`` is a number, as in the documented example (``"errorCode": 400``); a line with a code of
        another type does not fit, and the file is read by the general path."""
        error = pa.struct([("errorCode", pa.int64()), ("errorMessage", pa.string())])
        return pa.schema([("recordId", pa.string()), ("modelOutput", self.output_type), ("error", error)])


def _field(array: pa.Array, name: str) -> pa.Array:
    if not pa.types.is_struct(array.type) or array.type.get_field_index(name) < 0:
        raise KeyError(name)
    return pc.struct_field(array, name)


def _join_text_blocks(content: pa.Array, *, only_type: str | None) -> pa.Array:
    """list<struct<text[, type]>> -> the concatenated text of each row (empty string for an empty list)."""
    if not pa.types.is_list(content.type):
        raise TypeError("content is not a list")
    blocks = pc.list_flatten(content)
    texts = _field(blocks, "text").cast(pa.string())
    if only_type is not None:
        wanted = pc.equal(_field(blocks, "type"), only_type)
        if wanted.null_count or not pc.all(wanted).as_py():  # every block of the wanted type: no copy
            texts = pc.if_else(wanted, texts, "")
    if texts.null_count:
        texts = pc.fill_null(texts, "")
    if len(blocks) == len(content) and content.null_count == 0 and pc.all(pc.equal(content.value_lengths(), 1)).as_py():
        return texts  # one block per answer, the usual case: its text is the answer, nothing to join
    offsets = pc.subtract(content.offsets, content.offsets[0])
    joined = pc.binary_join(pa.ListArray.from_arrays(offsets, texts), "")
    return pc.if_else(content.is_null(), pa.scalar(None, pa.string()), joined)


def anthropic(outputs: pa.Array) -> pa.Array:
    return _join_text_blocks(_field(outputs, "content"), only_type="text")


def converse(outputs: pa.Array) -> pa.Array:
    """Nova and the Converse type: ``output.message.content[*].text``."""
    return _join_text_blocks(_field(_field(_field(outputs, "output"), "message"), "content"), only_type=None)


def _struct(**fields: pa.DataType) -> pa.StructType:
    return pa.struct(list(fields.items()))


def embedding(outputs: pa.Array) -> pa.Array:
    vectors = _field(outputs, "embedding")
    if not pa.types.is_list(vectors.type):
        raise TypeError("embedding is not a list")
    empty = pc.equal(pc.list_value_length(vectors), 0)
    vectors = vectors.cast(EMBEDDING_TYPE)
    return pc.if_else(pc.fill_null(empty, False), pa.scalar(None, EMBEDDING_TYPE), vectors)


ANTHROPIC = ColumnReader(_struct(content=pa.list_(_struct(type=pa.string(), text=pa.string()))), anthropic)
CONVERSE = ColumnReader(_struct(output=_struct(message=_struct(content=pa.list_(_struct(text=pa.string()))))), converse)
EMBEDDING = ColumnReader(_struct(embedding=pa.list_(pa.float64())), embedding)

READERS: dict[str, ColumnReader] = {
    "anthropic": ANTHROPIC,
    "nova": CONVERSE,
    "converse": CONVERSE,
    "titan-embed-text-v2": EMBEDDING,
    "titan-embed-image-v1": EMBEDDING,
}
