"""Vectorized ``modelOutput`` readers for the common families, over the columns Arrow's JSON reader produces.

Each reader takes the ``modelOutput`` column (a struct array, null where a line had none) and returns the values
(string, or list<float32> for embeddings) with nulls where the output could not be read. Families without a reader
here are parsed row by row by their adapter (``ModelAdapter.parse_model_output``), which is always correct; these
readers only make the frequent cases fast, and tests check that both give the same result.
"""

from __future__ import annotations

from collections.abc import Callable

import pyarrow as pa
import pyarrow.compute as pc

from lambdas.shared.run_files import EMBEDDING_TYPE

ColumnReader = Callable[[pa.Array], pa.Array]


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
        texts = pc.if_else(pc.equal(_field(blocks, "type"), only_type), texts, "")
    texts = pc.fill_null(texts, "")
    offsets = pc.subtract(content.offsets, content.offsets[0])
    joined = pc.binary_join(pa.ListArray.from_arrays(offsets, texts), "")
    return pc.if_else(content.is_null(), pa.scalar(None, pa.string()), joined)


def anthropic(outputs: pa.Array) -> pa.Array:
    return _join_text_blocks(_field(outputs, "content"), only_type="text")


def converse(outputs: pa.Array) -> pa.Array:
    """Nova and the Converse type: ``output.message.content[*].text``."""
    return _join_text_blocks(_field(_field(_field(outputs, "output"), "message"), "content"), only_type=None)


def embedding(outputs: pa.Array) -> pa.Array:
    vectors = _field(outputs, "embedding")
    if not pa.types.is_list(vectors.type):
        raise TypeError("embedding is not a list")
    empty = pc.equal(pc.list_value_length(vectors), 0)
    vectors = vectors.cast(EMBEDDING_TYPE)
    return pc.if_else(pc.fill_null(empty, False), pa.scalar(None, EMBEDDING_TYPE), vectors)


READERS: dict[str, ColumnReader] = {
    "anthropic": anthropic,
    "nova": converse,
    "converse": converse,
    "titan-embed-text-v2": embedding,
    "titan-embed-image-v1": embedding,
}
