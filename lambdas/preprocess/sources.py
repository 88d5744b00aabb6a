"""Input sources read as streams of Arrow record batches: S3 CSV, JSONL and Parquet files (one object, or every
supported file under a prefix), and Hugging Face datasets.

Memory stays bounded whatever the input size: CSV and JSONL are read in blocks, Parquet by row groups through
ranged GETs, Hugging Face datasets with ``streaming=True``.

CSV and JSONL blocks are small (CSV_BLOCK_BYTES): Arrow's streaming readers read up to 32 blocks ahead of the
consumer on a background thread, so the block size sets how much of the file sits in memory (16 MB blocks held
half a gigabyte whenever S3 delivered faster than preprocess consumed), and small blocks parse faster too (they stay
in the CPU's caches and are recycled by the allocator instead of being mapped and faulted in afresh). A row longer
than a block cannot be parsed, so a read that meets one starts over with blocks eight times bigger, the column types
already seen fixed, skipping the rows already delivered.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Protocol, runtime_checkable

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq
from botocore.exceptions import ClientError

from lambdas.shared.errors import InputValidationError
from lambdas.shared.models import ExecutionInput
from lambdas.shared.s3io import S3RangeReader, list_keys

BATCH_ROWS = 65_536
BATCH_BYTES = 16 << 20  # preprocess stages batches of at most BATCH_ROWS rows and about BATCH_BYTES bytes
READ_BUFFER_BYTES = 8 << 20  # bytes per read (a ranged GET from S3) while decoding a Parquet column chunk
# Arrow's streaming CSV and JSON readers read up to 32 blocks ahead on a background thread (its source: a
# background generator of its default queue size), so the block size bounds that buffer: 16 MB blocks held up to
# 512 MB of raw input. 2 MB blocks keep it at 64 MB and parse faster than 16 MB ones; the stage joins the small
# blocks into batches (logic.rebatched). A read restarts with blocks 8x bigger for a longer row ...
CSV_BLOCK_BYTES = 2 << 20
# ... and the reads themselves are held back (GatedBody): at most BLOCKS_AHEAD blocks read and not yet made into a
# batch the stage took, while the stage works; Arrow's own queue of 32 filled with the length of the pass (20 blocks
# of 2 MB queued at 200k CSV rows, 34 at 2M), which the peak followed
BLOCKS_AHEAD = 8
MAX_BLOCK_BYTES = 1 << 30  # ... up to 1 GiB (Bedrock's input file limit is 1 GB: no valid record is longer)
# bytes per ranged read while a hub file is copied as the run's records (HubParquetFile.copy_to), each held in memory
# on its way into the records' upload: 16 MiB reads peaked 60 MB higher (403-408 MB at 2M rows in bench.memory, against
# 338-347 MB), their bodies and the chunks they were joined from staying in the heaps between reads
COPY_BYTES = 8 << 20
FOOTER_READS_AT_ONCE = 8  # Parquet footers of a prefix's files read at once (two ranged GETs each)
SUPPORTED_SUFFIXES = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".jsonl": "jsonl", ".ndjson": "jsonl"}
_UTF8_HINT = "; if the file is not UTF-8, convert it first (e.g. iconv -f latin1 -t utf-8)"


def parquet_batches(parquet: pq.ParquetFile, columns: Sequence[str] | None = None) -> Iterator[pa.RecordBatch]:
    """Batches of at most BATCH_ROWS rows and about BATCH_BYTES bytes (``batch_rows``), one row group at a time, of
    every column or only ``columns``. Open the file with ``pre_buffer=False``: with pre-buffering, pyarrow keeps
    every row group's buffers while iterating (memory grew with the file's size); and with ``buffer_size``
    (READ_BUFFER_BYTES): without it, Arrow reads a whole column chunk at once, whatever the row group's size."""
    for group in range(parquet.num_row_groups):
        rows = batch_rows(parquet.metadata.row_group(group), columns)
        yield from parquet.iter_batches(batch_size=rows, row_groups=[group], columns=columns)


def batch_rows(group: pq.RowGroupMetaData, columns: Sequence[str] | None = None) -> int:
    """Rows per decoded batch of a row group: BATCH_ROWS, fewer where that many rows of the columns read would be
    more than BATCH_BYTES uncompressed (from the footer). A batch of 65,536 rows of long text is 35 MB or more: the
    stage slices it into batches of BATCH_BYTES, but every slice keeps the whole batch alive, so the rows a row group
    decodes at once (more in bigger row groups) were what the memory depended on. The footer's sizes are of the
    encoded pages: a dictionary-encoded column (a few values repeated) decodes to more, and is cut by the stage."""
    wanted = None if columns is None else set(columns)
    size = sum(
        group.column(index).total_uncompressed_size
        for index in range(group.num_columns)
        if wanted is None or group.column(index).path_in_schema.split(".")[0] in wanted
    )
    if group.num_rows == 0 or size <= BATCH_BYTES:
        return BATCH_ROWS
    return max(1, min(BATCH_ROWS, BATCH_BYTES * group.num_rows // size))


class Source(Protocol):
    description: str

    def batches(self) -> Iterator[pa.RecordBatch]: ...

    @property
    def records_object(self) -> tuple[str, str] | None:
        """(bucket, key) of an S3 Parquet object that can serve as the run's records as it is (no re-encoding)."""
        ...


@runtime_checkable
class Counted(Protocol):
    """A source that can say how many rows it holds before it is read (None: it cannot tell)."""

    def known_rows(self) -> int | None: ...


@runtime_checkable
class Projected(Protocol):
    """A source whose columns can be read alone (Parquet): its whole schema is known before it is read, and
    ``column_batches`` decodes (and, from S3, fetches) only the columns asked for."""

    def schema(self) -> pa.Schema: ...

    def column_batches(self, columns: Sequence[str]) -> Iterator[pa.RecordBatch]: ...


@runtime_checkable
class Copied(Protocol):
    """A source whose one file serves as the run's records as it is: its bytes are copied into the records' upload
    (``sink``, written as a file), neither decoded nor encoded; ``stop`` set ends the copy early. A Parquet object in
    S3 is copied server-side instead (``records_object``)."""

    def copy_to(self, sink: Any, stop: threading.Event) -> None: ...


@runtime_checkable
class CopiedFiles(Protocol):
    """A source whose files serve as the run's records as they are, one after the other (a prefix of Parquet
    objects that share one schema): (bucket, key, rows) of each, in row order, each copied server-side."""

    def records_files(self) -> list[tuple[str, str, int]]: ...


@dataclass(frozen=True)
class TextFormat:
    """A line-oriented format Arrow reads in blocks from a stream: how to open it (the body, the block size, and the
    schema to keep, or None to infer it) and what to say when it fails."""

    name: str
    open: Callable[[Any, int, pa.Schema | None], Iterator[pa.RecordBatch]]
    fix: str


def _open_csv(body: Any, block_size: int, schema: pa.Schema | None) -> Iterator[pa.RecordBatch]:
    types = {field.name: field.type for field in schema} if schema is not None else None
    return pacsv.open_csv(
        body,
        read_options=pacsv.ReadOptions(block_size=block_size),
        convert_options=pacsv.ConvertOptions(column_types=types),
    )


def _open_json(body: Any, block_size: int, schema: pa.Schema | None) -> Iterator[pa.RecordBatch]:
    return pajson.open_json(
        body,
        read_options=pajson.ReadOptions(block_size=block_size),
        parse_options=pajson.ParseOptions(explicit_schema=schema),
    )


CSV = TextFormat(
    "CSV",
    _open_csv,
    "every line needs the header's columns and each column one type throughout the file (types are inferred from "
    "the first block)",
)
JSONL = TextFormat(
    "JSONL",
    _open_json,
    "give one JSON object per line with the same keys and value types on every line",
)


class GatedBody:
    """An S3 body whose reads stay at most ``ahead`` blocks ahead of the batches the stage has taken from the reader
    over it (``batches``): Arrow's streaming CSV and JSON readers read blocks on their own thread into a queue of up
    to 32, which filled over a long pass (its raw blocks are the memory that grew from 200k to 2M CSV rows) and not
    over a short one. Arrow makes a batch of each block (the next one read too, for the row that straddles them), so
    the bound never holds back what the next batch needs; should a reader ever need more, a read held while the
    stage waits for a batch (or for the reader to open) is let through after ``grace`` seconds in which nothing was
    taken (slower, never stuck).
    Closing it lets a held read return as at the end of the body."""

    def __init__(self, body: Any, ahead: int = BLOCKS_AHEAD, grace: float = 0.05) -> None:
        self._body, self._ahead, self._grace = body, ahead, grace
        self._cond = threading.Condition()
        self._reads = self._taken = 0
        self._closed = False
        self._wanted = True  # the stage waits from the start: opening the reader reads its first blocks
        self.held = threading.Event()  # set whenever a read is held (tests observe the bound with it)

    def __getattr__(self, name: str) -> Any:  # anything else Arrow asks of a file (closed, readable, ...)
        return getattr(self._body, name)

    def read(self, size: int = -1) -> bytes:
        with self._cond:
            while not self._closed and self._reads - self._taken >= self._ahead:
                self.held.set()
                if not self._cond.wait(self._grace if self._wanted else None) and self._wanted:
                    break  # the stage waits and nothing was taken meanwhile: its batch needs this block
            if self._closed:
                return b""
            self._reads += 1
        data: bytes = self._body.read(size)
        return data

    def batches(self, reader: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        """``reader``'s batches, each one counted as taken when it is handed on. However it ends (the last batch, an
        error of the reader, the caller stopping), held reads are let go first, as at the end of the body: Arrow's
        reader waits for its reading thread when it is destroyed, and that thread must not be held then."""
        try:
            while True:
                with self._cond:
                    self._wanted = True
                    self._cond.notify_all()
                try:
                    batch = next(reader, None)
                finally:
                    with self._cond:
                        self._wanted = False
                        self._taken += 1
                        self._cond.notify_all()
                if batch is None:
                    return
                yield batch
        finally:
            self._stop()

    def _stop(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def close(self) -> None:
        self._stop()
        self._body.close()


@dataclass
class TextSource:
    """A CSV or JSONL object streamed from S3 in blocks of CSV_BLOCK_BYTES (bigger only for a longer row)."""

    s3: Any
    bucket: str
    key: str
    description: str
    format: TextFormat

    records_object = None

    def batches(self) -> Iterator[pa.RecordBatch]:
        block_size, schema, delivered = CSV_BLOCK_BYTES, None, 0
        while True:
            skip = delivered  # a restart reads the rows already delivered again: they are skipped
            body = GatedBody(self.s3.get_object(Bucket=self.bucket, Key=self.key)["Body"])
            try:
                for batch in body.batches(iter(self.format.open(body, block_size, schema))):
                    if skip >= batch.num_rows:
                        skip -= batch.num_rows
                        continue
                    batch, skip = batch.slice(skip), 0
                    schema, delivered = batch.schema, delivered + batch.num_rows
                    yield batch
                return
            except pa.ArrowInvalid as exc:
                if "straddling object" in str(exc) and block_size < MAX_BLOCK_BYTES:
                    block_size = min(block_size * 8, MAX_BLOCK_BYTES)  # a row longer than a block: bigger blocks
                    continue
                raise InputValidationError(
                    f"s3_uri '{self.description}' could not be read as {self.format.name}: {exc}; {self.format.fix}"
                    + _UTF8_HINT
                ) from None
            finally:
                body.close()


@dataclass
class MultiSource:
    """Several files under one S3 prefix, read one after the other (they must share one schema)."""

    parts: list[Source]
    description: str

    records_object = None

    def batches(self) -> Iterator[pa.RecordBatch]:
        for part in self.parts:
            yield from part.batches()

    def known_rows(self) -> int | None:
        """The rows of every file, when each file says how many it holds before it is read (Parquet)."""
        counts = [part.known_rows() if isinstance(part, Counted) else None for part in self.parts]
        return None if None in counts else sum(count or 0 for count in counts)


@dataclass
class ParquetSource:
    s3: Any
    bucket: str
    key: str
    size: int
    description: str

    @property
    def records_object(self) -> tuple[str, str]:
        return self.bucket, self.key

    def _open(self) -> pq.ParquetFile:
        try:
            return pq.ParquetFile(
                S3RangeReader(self.s3, self.bucket, self.key, self.size),
                pre_buffer=False,
                buffer_size=READ_BUFFER_BYTES,
            )
        except (pa.ArrowInvalid, OSError) as exc:
            raise InputValidationError(
                f"s3_uri '{self.description}' could not be read as Parquet: {exc}; check the file is valid Parquet"
            ) from None

    def batches(self) -> Iterator[pa.RecordBatch]:
        yield from parquet_batches(self._open())

    def column_batches(self, columns: Sequence[str]) -> Iterator[pa.RecordBatch]:
        yield from parquet_batches(self._open(), columns)

    def schema(self) -> pa.Schema:
        return self._open().schema_arrow

    def known_rows(self) -> int:
        """The row count in the file's footer (two ranged GETs: its length, then the footer)."""
        return int(self._open().metadata.num_rows)

    def footer(self) -> tuple[pa.Schema, int]:
        """The file's Arrow schema and row count, from one read of its footer."""
        parquet = self._open()
        return parquet.schema_arrow, int(parquet.metadata.num_rows)


@dataclass
class ParquetFiles:
    """Parquet objects under one S3 prefix whose Arrow schemas agree (the same columns, types and order, as the
    pass compares them: schema metadata aside), read one after the other. Like one Parquet object, they serve as the
    run's records as they are (``records_files``: each copied server-side, listed in ``records.json``), and the
    JSONL lines need only the template's columns (``column_batches``): no whole row is decoded, none is encoded.
    The footers are read once (``read``), ``FOOTER_READS_AT_ONCE`` at a time."""

    parts: list[ParquetSource]
    rows: list[int]
    arrow_schema: pa.Schema
    description: str

    records_object = None

    @classmethod
    def read(cls, parts: list[ParquetSource], description: str) -> ParquetFiles | MultiSource:
        """The files as ``ParquetFiles`` when their schemas agree; else as a ``MultiSource``, read whole as before
        (its pass refuses a file whose rows change the columns or types)."""
        with ThreadPoolExecutor(max_workers=max(1, min(FOOTER_READS_AT_ONCE, len(parts)))) as pool:
            footers = list(pool.map(ParquetSource.footer, parts))
        schema = footers[0][0]
        if any(not other.equals(schema) for other, _rows in footers[1:]):
            whole: list[Source] = list(parts)
            return MultiSource(whole, description)
        return cls(parts, [rows for _schema, rows in footers], schema, description)

    def batches(self) -> Iterator[pa.RecordBatch]:
        for part in self.parts:
            yield from part.batches()

    def column_batches(self, columns: Sequence[str]) -> Iterator[pa.RecordBatch]:
        for part in self.parts:
            yield from part.column_batches(columns)

    def schema(self) -> pa.Schema:
        return self.arrow_schema

    def known_rows(self) -> int:
        return sum(self.rows)

    def records_files(self) -> list[tuple[str, str, int]]:
        return [(part.bucket, part.key, rows) for part, rows in zip(self.parts, self.rows, strict=True)]


@dataclass
class LocalParquet:
    """A local Parquet file preprocess wrote (the rows of a source that cannot count them before it is read, see
    ``logic.convert``), read back one row group at a time; ``description`` names the input it came from."""

    path: Path
    description: str

    records_object = None

    def batches(self) -> Iterator[pa.RecordBatch]:
        yield from parquet_batches(pq.ParquetFile(self.path, pre_buffer=False, buffer_size=READ_BUFFER_BYTES))

    def column_batches(self, columns: Sequence[str]) -> Iterator[pa.RecordBatch]:
        yield from parquet_batches(pq.ParquetFile(self.path, pre_buffer=False, buffer_size=READ_BUFFER_BYTES), columns)

    def schema(self) -> pa.Schema:
        return pq.ParquetFile(self.path).schema_arrow

    def known_rows(self) -> int:
        return int(pq.ParquetFile(self.path).metadata.num_rows)


def hub_file(path: str) -> Any:
    """A hub file (``hf://`` path) opened for ranged reads without fsspec's cache: each read is one request for the
    bytes asked, which Arrow's Parquet reader asks READ_BUFFER_BYTES at a time. Its default read-ahead cache fetched
    5 MiB more than each read and copied what it returned twice (a partial hit joined to a new block), every copy a
    fresh allocation the kernel faulted in."""
    from huggingface_hub import HfFileSystem

    return HfFileSystem().open(path, "rb", cache_type="none")


@dataclass
class HuggingFaceSource:
    """A hub dataset's split. A split of Parquet files (most hub datasets, and every one the hub converted) is read
    file by file, one row group at a time through ranged reads, as ParquetSource reads S3 Parquet; the footers give
    the row count before the pass, so the jobs are planned first (``logic.stage_planned``). Other datasets are
    streamed by ``datasets`` (``streaming=True``), with its Parquet scans kept from pre-buffering.

    Reading the files directly costs a third of the CPU of ``datasets``' scan of the same rows (its batching and
    per-batch conversions), and memory stays that of one row group: the scan ran ahead of preprocess and Arrow's
    pool swelled with the file (1.2 GB at 2.24M SimpleCoT rows)."""

    dataset_id: str
    split: str
    description: str

    records_object = None
    _builder: Any = field(default=None, init=False, repr=False)

    def _load_builder(self) -> Any:
        """``datasets``' builder of the dataset (what load_dataset(streaming=True) makes), loaded once."""
        if self._builder is None:
            import datasets  # heavy import, only needed for this source

            try:
                self._builder = datasets.load_dataset_builder(self.dataset_id)
            except (FileNotFoundError, ValueError, RuntimeError) as exc:
                raise self._unloadable(exc) from None
        return self._builder

    def _unloadable(self, exc: Exception) -> InputValidationError:
        # FileNotFoundError: unknown or empty repo; ValueError: unknown split; RuntimeError: a script dataset.
        # ConnectionError (hub unreachable) is not the user's input: it propagates as itself.
        return InputValidationError(
            f"dataset_id '{self.dataset_id}' with split '{self.split}' could not be loaded: {exc}; check the id "
            "and split on the Hugging Face hub (private datasets need a token; script datasets are unsupported)"
        )

    def _parquet_files(self) -> list[str] | None:
        """The split's Parquet files (``hf://`` paths) when they can be read as they are: a Parquet dataset without
        a column selection or row filter in its configuration; None otherwise (``datasets`` reads the split)."""
        from datasets.packaged_modules.parquet.parquet import ParquetConfig

        config = self._load_builder().config
        if (
            not isinstance(config, ParquetConfig)
            or getattr(config, "columns", None)
            or getattr(config, "filters", None)
        ):
            return None
        files = (config.data_files or {}).get(self.split)
        return [str(path) for path in files] if files else None

    def known_rows(self) -> int | None:
        """The rows in the split's Parquet files' footers; None when ``datasets`` reads the split."""
        files = self._parquet_files()
        if files is None:
            return None
        total = 0
        for path in files:
            with hub_file(path) as file:
                total += self._open(file, path).metadata.num_rows
        return total

    def _open(self, file: Any, path: str) -> pq.ParquetFile:
        try:
            return pq.ParquetFile(file, pre_buffer=False, buffer_size=READ_BUFFER_BYTES)
        except (pa.ArrowInvalid, OSError) as exc:
            raise self._unreadable(path, exc) from None

    def _unreadable(self, path: str, exc: Exception) -> InputValidationError:
        return InputValidationError(
            f"dataset_id '{self.dataset_id}' split '{self.split}' has unreadable data: {path}: {exc}"
        )

    def one_file(self) -> HubParquetFile | None:
        """The split as a ``HubParquetFile`` when it is one Parquet file whose rows need no cast to the dataset's
        features (the file's bytes can then be the run's records); None otherwise (read by ``batches``)."""
        files = self._parquet_files()
        if files is None or len(files) != 1:
            return None
        features = self._load_builder().info.features
        single = HubParquetFile.read(self, files[0])
        if features is not None and not single.schema().equals(features.arrow_schema):
            return None
        return single

    def batches(self) -> Iterator[pa.RecordBatch]:
        files = self._parquet_files()
        if files is not None:
            yield from self._file_batches(files)
        else:
            yield from self._streamed_batches()

    def _file_batches(self, files: list[str]) -> Iterator[pa.RecordBatch]:
        """Each file's row groups in turn, cast to the dataset's declared features as ``datasets`` casts them."""
        from datasets.table import table_cast

        features = self._load_builder().info.features
        schema = features.arrow_schema if features is not None else None
        for path in files:
            with hub_file(path) as file:
                try:
                    for batch in parquet_batches(self._open(file, path)):
                        if schema is not None and not batch.schema.equals(schema):
                            yield from table_cast(pa.Table.from_batches([batch]), schema).to_batches()
                        else:
                            yield batch
                except pa.ArrowInvalid as exc:
                    raise self._unreadable(path, exc) from None

    def _streamed_batches(self) -> Iterator[pa.RecordBatch]:
        import pyarrow.dataset as pads
        from datasets.packaged_modules.parquet.parquet import ParquetConfig

        builder = self._load_builder()
        try:
            if isinstance(builder.config, ParquetConfig):  # Parquet with a column selection or filter: no pre-buffering
                builder.config.fragment_scan_options = pads.ParquetFragmentScanOptions(pre_buffer=False)
            dataset = builder.as_streaming_dataset(split=self.split)
        except (FileNotFoundError, ValueError, RuntimeError) as exc:
            raise self._unloadable(exc) from None
        try:
            for table in dataset.with_format("arrow").iter(batch_size=BATCH_ROWS):
                yield from table.to_batches()
        except pa.ArrowInvalid as exc:
            if "BatchSize must be greater than 0" in str(exc):
                return  # an empty split: the caller reports "no rows"
            raise InputValidationError(
                f"dataset_id '{self.dataset_id}' split '{self.split}' has unreadable data: {exc}"
            ) from None


@dataclass
class HubParquetFile:
    """A hub split that is one Parquet file whose rows need no cast (its schema is the dataset's features', or the
    dataset declares none): the file, read as ``HuggingFaceSource`` reads it, is the rows ``datasets`` gives, so its
    bytes serve as the run's records as they are (``copy_to``), as an S3 Parquet input is copied server-side. The
    JSONL lines need only the template's columns (``column_batches``): the others are neither fetched nor decoded,
    and nothing is encoded. ``hub`` says what to say of an unreadable file. Its footer is read once (``read``): the
    schema and the row count are asked of it several times (the features' check, the plan, the schema check)."""

    hub: HuggingFaceSource
    path: str  # hf:// path
    description: str
    arrow_schema: pa.Schema
    rows: int

    records_object = None

    @classmethod
    def read(cls, hub: HuggingFaceSource, path: str) -> HubParquetFile:
        """The file at ``path`` of ``hub``'s split, with its footer's schema and row count."""
        with hub_file(path) as file:
            parquet = hub._open(file, path)
            return cls(hub, path, hub.description, parquet.schema_arrow, int(parquet.metadata.num_rows))

    @contextmanager
    def _parquet(self) -> Iterator[pq.ParquetFile]:
        with hub_file(self.path) as file:
            yield self.hub._open(file, self.path)

    def _batches(self, columns: Sequence[str] | None) -> Iterator[pa.RecordBatch]:
        with self._parquet() as parquet:
            try:
                yield from parquet_batches(parquet, columns)
            except pa.ArrowInvalid as exc:
                raise self.hub._unreadable(self.path, exc) from None

    def batches(self) -> Iterator[pa.RecordBatch]:
        yield from self._batches(None)

    def column_batches(self, columns: Sequence[str]) -> Iterator[pa.RecordBatch]:
        yield from self._batches(columns)

    def schema(self) -> pa.Schema:
        return self.arrow_schema

    def known_rows(self) -> int:
        return self.rows

    def copy_to(self, sink: Any, stop: threading.Event) -> None:
        """The file's bytes, in order, into ``sink``: ranged reads of COPY_BYTES."""
        with hub_file(self.path) as file:
            while not stop.is_set():
                chunk = file.read(COPY_BYTES)
                if not chunk:
                    return
                sink.write(chunk)


def open_source(inp: ExecutionInput, s3: Any, data_bucket: str) -> Source:
    if inp.dataset_id is not None:
        hub = HuggingFaceSource(inp.dataset_id, inp.split, description=f"hf:{inp.dataset_id}[{inp.split}]")
        return hub.one_file() or hub
    bucket, key = inp.s3_location
    if bucket != data_bucket:
        raise InputValidationError(
            f"s3_uri '{inp.s3_uri}' is in bucket '{bucket}', but this deployment reads only its own bucket; "
            f"upload the file to s3://{data_bucket}/inputs/ and use that URI"
        )
    if key.endswith("/"):
        return _prefix_source(s3, bucket, key, inp.s3_uri or key)
    kind = _kind(key, inp.s3_uri or key)
    try:
        size = int(s3.head_object(Bucket=bucket, Key=key)["ContentLength"])
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code", "") in ("404", "NoSuchKey", "NotFound"):
            raise InputValidationError(
                f"s3_uri '{inp.s3_uri}' does not exist; upload the file first (aws s3 cp FILE {inp.s3_uri}), or end "
                "the URI with '/' to read every file under a prefix"
            ) from None
        raise
    if size == 0:
        raise InputValidationError(f"s3_uri '{inp.s3_uri}' is an empty file; upload a file with a header and rows")
    return _file_source(s3, bucket, key, kind, size, f"s3://{bucket}/{key}")


def _kind(key: str, uri: str) -> str:
    kind = SUPPORTED_SUFFIXES.get(PurePosixPath(key).suffix.lower())
    if kind is None:
        raise InputValidationError(
            f"s3_uri '{uri}' has an unsupported file type; use one of {sorted(SUPPORTED_SUFFIXES)}"
        )
    return kind


def _file_source(s3: Any, bucket: str, key: str, kind: str, size: int, description: str) -> Source:
    if kind == "parquet":
        return ParquetSource(s3, bucket, key, size, description)
    return TextSource(s3, bucket, key, description, CSV if kind == "csv" else JSONL)


def _prefix_source(s3: Any, bucket: str, prefix: str, uri: str) -> Source:
    """Every supported, non-empty file directly or deeper under ``prefix``, in key order; one format only."""
    files = [
        (key, size)
        for key, size in list_keys(s3, bucket, prefix)
        if size > 0 and PurePosixPath(key).suffix.lower() in SUPPORTED_SUFFIXES
    ]
    if not files:
        raise InputValidationError(
            f"s3_uri '{uri}' is a prefix with no non-empty {sorted(SUPPORTED_SUFFIXES)} files under it; upload "
            "files there or give one file's URI"
        )
    kinds = {SUPPORTED_SUFFIXES[PurePosixPath(key).suffix.lower()] for key, _ in files}
    if len(kinds) > 1:
        raise InputValidationError(f"s3_uri '{uri}' mixes file formats {sorted(kinds)}; put one format under a prefix")
    (kind,) = kinds
    description = f"{uri} ({len(files)} files)"
    if kind == "parquet":  # every file a ParquetSource: none may be left out of the records
        parquet = [ParquetSource(s3, bucket, key, size, f"s3://{bucket}/{key}") for key, size in sorted(files)]
        return ParquetFiles.read(parquet, description)
    parts = [_file_source(s3, bucket, key, kind, size, f"s3://{bucket}/{key}") for key, size in sorted(files)]
    return MultiSource(parts, description=description)
