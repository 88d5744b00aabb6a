"""Every patch the local runtime makes to moto's S3, in one place: its stored objects are read only as far as needed.

moto keeps each stored object in a spool (a ``SpooledTemporaryFile``: memory up to 5 MB, then a file on disk), but
reads the whole of it into memory for every GET (a ranged GET is cut from the whole afterwards), for every
``UploadPartCopy`` part, and several times over when it completes a multipart upload. A run's input and
``records.parquet`` are hundreds of MB at a million rows and every Parquet reader reads them in ranges, so the local
runtime's memory grew with the input. With these patches (``installed()``):

- a GET returns the object as a ``SpooledValue``: the range a ranged GET asks for is read from the spool and nothing
  else; a whole-object GET streams from the spool as the client reads (in 1 MB steps for werkzeug's server);
- ``UploadPartCopy`` reads only its range of the source;
- completing a multipart upload copies the parts file to file into the new object's spool, computing its
  full-object checksum as it goes, without holding the parts or the object.

What S3 answers stays moto's: headers, status codes, errors, ETags and checksums are computed as moto computes them.
moto is pinned exactly (requirements-dev.txt); ``PATCHED`` names each replaced function with the signature it was
written against, ``installed()`` refuses a moto whose signatures differ, and tests/unit/test_moto_patches.py fails
on such an upgrade.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import hashlib
import inspect
import io
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

CHUNK = 1 << 20  # bytes per step when streaming or copying a spool


def _targets() -> dict[str, tuple[Any, str]]:
    """Name -> (owner, attribute) of everything patched."""
    from moto.core import botocore_stubber
    from moto.s3.models import S3Backend
    from moto.s3.responses import S3Response

    return {
        "S3Response.get_object": (S3Response, "get_object"),
        "botocore_stubber.MockRawResponse": (botocore_stubber, "MockRawResponse"),
        "S3Backend.upload_part_copy": (S3Backend, "upload_part_copy"),
        "S3Backend.complete_multipart_upload": (S3Backend, "complete_multipart_upload"),
    }


# The signature of each replaced moto function (a class: its constructor), as in the pinned moto.
PATCHED: dict[str, str] = {
    "S3Response.get_object": "(self) -> tuple[int, dict[str, typing.Any], str | bytes]",
    "botocore_stubber.MockRawResponse": "(response_input: str | bytes)",
    "S3Backend.upload_part_copy": (
        "(self, dest_bucket_name: 'str', multipart_id: 'str', part_id: 'int', src_bucket_name: 'str', "
        "src_key_name: 'str', src_version_id: 'str | None', start_byte: 'int', end_byte: 'int') -> 'FakeKey'"
    ),
    "S3Backend.complete_multipart_upload": (
        "(self, bucket_name: 'str', multipart_id: 'str', body: 'Iterator[tuple[int, str]]') -> 'FakeKey | None'"
    ),
}


def current_signatures() -> dict[str, str]:
    """The signatures of the functions ``PATCHED`` names, in the moto installed now."""
    return {name: str(inspect.signature(getattr(owner, attr))) for name, (owner, attr) in _targets().items()}


# -- reading a stored object's spool ------------------------------------------------------------------------------


def read_spool(key: Any, start: int, stop: int) -> bytes:
    """Bytes ``[start, stop)`` of a moto ``FakeKey``, read from its spool (under the key's lock, as moto reads it)."""
    if stop <= start:
        return b""
    with key.lock:
        key._value_buffer.seek(start)
        data: bytes = key._value_buffer.read(stop - start)
    return data


class SpooledValue:
    """A stored object's bytes, read on demand: what moto's ``get_object`` returns as the body instead of the whole
    value. ``len()`` is the object's size, a slice reads only its range (moto's range handling slices the body), and
    iterating streams it in ``CHUNK`` steps."""

    def __init__(self, key: Any) -> None:
        self.key = key

    def __len__(self) -> int:
        return int(self.key.contentsize)

    def __getitem__(self, item: slice) -> bytes:
        if not isinstance(item, slice):
            raise TypeError(f"SpooledValue takes slices, not {type(item).__name__}")
        start, stop, step = item.indices(len(self))
        if step != 1:
            raise ValueError("SpooledValue takes contiguous slices only")
        return read_spool(self.key, start, stop)

    def __iter__(self) -> Iterator[bytes]:
        for start in range(0, len(self), CHUNK):
            yield read_spool(self.key, start, min(len(self), start + CHUNK))

    def __bytes__(self) -> bytes:
        return read_spool(self.key, 0, len(self))

    def reader(self) -> SpoolReader:
        return SpoolReader(self.key)


class SpoolReader(io.RawIOBase):
    """A forward-only stream over a stored object, reading its spool as the client reads (the GetObject body)."""

    def __init__(self, key: Any) -> None:
        super().__init__()
        self._key = key
        self._pos = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        end = int(self._key.contentsize)
        if size is not None and size >= 0:
            end = min(end, self._pos + size)
        data = read_spool(self._key, self._pos, end)
        self._pos += len(data)
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


class _LazyValueKey:
    """A ``FakeKey`` whose ``value`` is a ``SpooledValue``; every other attribute is the key's own."""

    def __init__(self, key: Any) -> None:
        self._key = key

    @property
    def value(self) -> SpooledValue:
        return SpooledValue(self._key)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._key, name)


# -- the replacements ---------------------------------------------------------------------------------------------


def _get_object(original: Callable[..., Any]) -> Callable[..., Any]:
    """Replaces ``moto.s3.responses.S3Response.get_object``, which returns ``key.value``: the whole object read into
    memory, from which ``key_response`` then cuts a requested range. moto's own function still runs (conditions,
    headers, checksums, partNumber); only the key it looks up answers ``value`` with a ``SpooledValue``. Each request
    has its own ``S3Response`` (``key_dispatch`` makes one), so the per-instance ``_get_key`` is the request's own."""

    def get_object(self: Any) -> Any:
        get_key = self._get_key

        def lazy_key(*args: Any, **kwargs: Any) -> tuple[Any, bool]:
            key, not_modified = get_key(*args, **kwargs)
            return _LazyValueKey(key), not_modified

        self._get_key = lazy_key
        try:
            return original(self)
        finally:
            del self._get_key

    return get_object


def _raw_response(original: type) -> type:
    """Replaces ``moto.core.botocore_stubber.MockRawResponse``, a ``BytesIO`` of the whole body: a ``SpooledValue``
    body is streamed from the spool as botocore reads it instead."""

    class StreamingRawResponse(original):
        def __init__(self, response_input: Any) -> None:
            if isinstance(response_input, SpooledValue):
                super().__init__(b"")
                self._spool: SpoolReader | None = response_input.reader()
            else:
                super().__init__(response_input)
                self._spool = None

        def read(self, size: int | None = -1) -> bytes:
            if self._spool is None:
                return bytes(super().read(size))
            return self._spool.read(size)

        def readinto(self, buffer: Any) -> int:
            if self._spool is None:
                return int(super().readinto(buffer))
            return self._spool.readinto(buffer)

    return StreamingRawResponse


def _upload_part_copy(original: Callable[..., Any]) -> Callable[..., Any]:
    """Replaces ``moto.s3.models.S3Backend.upload_part_copy``, which reads the whole source (``.value``) and then
    slices the part's range: only the range is read."""

    def upload_part_copy(
        self: Any,
        dest_bucket_name: str,
        multipart_id: str,
        part_id: int,
        src_bucket_name: str,
        src_key_name: str,
        src_version_id: str | None,
        start_byte: int,
        end_byte: int,
    ) -> Any:
        multipart = self.get_bucket(dest_bucket_name).multiparts[multipart_id]
        source = self.get_object(src_bucket_name, src_key_name, version_id=src_version_id)
        if start_byte is None:
            value = read_spool(source, 0, source.contentsize)
        else:
            value = read_spool(source, start_byte, min(end_byte + 1, source.contentsize))
        return multipart.set_part(part_id, value)

    return upload_part_copy


def _complete_multipart_upload(original: Callable[..., Any]) -> Callable[..., Any]:
    """Replaces ``moto.s3.models.S3Backend.complete_multipart_upload`` and the ``FakeMultipart.complete`` it calls,
    which join every part's value in memory (twice, and a third time for a full-object checksum) and store the
    joined bytes. Here the same checks run (each listed part exists with its ETag; every part but the last is at
    least the minimum part size; at least one part), the ETag is moto's (MD5 of the part MD5s, ``-N``), the checksum
    is computed the way moto computes it, and the parts are copied file to file into the new object's spool. The new
    key is stored by moto's ``put_object`` with no bytes and its spool filled at once after: a GET in that instant
    would see an empty object (our runs never read an object before its upload completes)."""

    def complete_multipart_upload(
        self: Any, bucket_name: str, multipart_id: str, body: Iterator[tuple[int, str]]
    ) -> Any:
        from moto.s3 import models
        from moto.s3.exceptions import EntityTooSmall, InvalidPart, MalformedXML
        from moto.utilities.utils import md5_hash

        bucket = self.get_bucket(bucket_name)
        multipart = bucket.multiparts[multipart_id]
        checksum_algorithm: str | None = multipart.metadata.get("x-amz-checksum-algorithm")
        checksum_type: str | None = multipart.metadata.get("x-amz-checksum-type")
        builder = models.MultipartChecksumBuilder(checksum_algorithm, checksum_type)
        full_object = builder.checksum_type != "COMPOSITE"
        running = _RunningChecksum(builder.checksum_algorithm) if full_object else None
        md5s = bytearray()
        parts: list[Any] = []
        last = None
        for number, etag in body:
            part = multipart.parts.get(number)
            if part is None or part.etag.replace('"', "") != etag.replace('"', ""):
                raise InvalidPart()
            if last is not None and last.contentsize < models.S3_UPLOAD_PART_MIN_SIZE:
                raise EntityTooSmall()
            md5s.extend(codecs.decode(part.etag.replace('"', ""), "hex"))
            if running is None:
                builder.addPart(read_spool(part, 0, part.contentsize))  # a part's checksum: one part at a time
            parts.append(part)
            last = part
        if not parts:
            raise MalformedXML
        spool = tempfile.SpooledTemporaryFile(parts[0]._max_buffer_size)  # noqa: SIM115 - the new key owns it
        size = 0
        for part in parts:
            with part.lock:
                part._value_buffer.seek(0)
                if running is None:
                    shutil.copyfileobj(part._value_buffer, spool, CHUNK)
                else:
                    while chunk := part._value_buffer.read(CHUNK):
                        running.update(chunk)
                        spool.write(chunk)
            size += part.contentsize
        checksum = (builder.checksum_type, running.value(), 1) if running is not None else builder.build()
        full_etag = md5_hash()
        full_etag.update(bytes(md5s))
        del bucket.multiparts[multipart_id]

        key = self.put_object(
            bucket_name,
            multipart.key_name,
            b"",
            storage=multipart.storage,
            etag=f"{full_etag.hexdigest()}-{len(parts)}",
            multipart=multipart,
            encryption=multipart.sse_encryption,
            kms_key_id=multipart.kms_key_id,
        )
        with key.lock:
            key._value_buffer.close()
            key._value_buffer, key.contentsize = spool, size
        key.set_metadata(multipart.metadata)
        if checksum:
            key.checksum_algorithm = multipart.metadata.get("x-amz-checksum-algorithm")
            key.checksum_type, key.checksum_value, key.checksum_parts = checksum
        self.put_object_tagging(key, multipart.tags)
        self.put_object_acl(bucket_name=bucket_name, key_name=key.name, acl=multipart.acl, disable_notification=True)
        models.notifications.send_event(
            self.account_id,
            models.notifications.S3NotificationEvent.OBJECT_CREATED_COMPLETE_MULTIPART_UPLOAD_EVENT,
            bucket,
            bucket.keys.get(multipart.key_name),
        )
        return key

    return complete_multipart_upload


class _RunningChecksum:
    """``moto.s3.utils.compute_checksum`` of the whole object, fed chunk by chunk (same algorithms, same fallbacks:
    CRC32C without the crc32c package and CRC64NVME without awscrt are CRC32, anything unknown is SHA-256)."""

    def __init__(self, algorithm: str) -> None:
        from moto.core.compat import HAS_CRT

        self._crc: Callable[[bytes, int], int] | None = None
        self._width = 4
        self._hash: Any = None
        if algorithm == "SHA1":
            self._hash = hashlib.sha1(usedforsecurity=False)
        elif algorithm == "CRC32C":
            try:
                import crc32c

                self._crc = crc32c.crc32c
            except ImportError:
                self._crc = binascii.crc32
        elif algorithm == "CRC32":
            self._crc = binascii.crc32
        elif algorithm == "CRC64NVME" and HAS_CRT:
            from awscrt import checksums

            self._crc, self._width = checksums.crc64nvme, 8
        elif algorithm == "CRC64NVME":
            self._crc = binascii.crc32
        else:
            self._hash = hashlib.sha256(usedforsecurity=False)
        self._value = 0

    def update(self, chunk: bytes) -> None:
        if self._crc is not None:
            self._value = self._crc(chunk, self._value)
        else:
            self._hash.update(chunk)

    def value(self) -> str:
        digest = self._value.to_bytes(self._width, "big") if self._crc is not None else self._hash.digest()
        return base64.b64encode(digest).decode()


_REPLACEMENTS: dict[str, Callable[[Any], Any]] = {
    "S3Response.get_object": _get_object,
    "botocore_stubber.MockRawResponse": _raw_response,
    "S3Backend.upload_part_copy": _upload_part_copy,
    "S3Backend.complete_multipart_upload": _complete_multipart_upload,
}


@contextmanager
def installed() -> Iterator[None]:
    """moto's S3 with the patches above for the block; the originals come back after it. Refuses a moto whose
    patched functions have other signatures than ``PATCHED`` (the patches were written against the pinned one)."""
    changed = {name: sig for name, sig in current_signatures().items() if sig != PATCHED[name]}
    if changed:
        raise RuntimeError(
            f"moto's {', '.join(sorted(changed))} changed signature ({changed}); local/moto_patches.py was written "
            "for the moto pinned in requirements-dev.txt: install that version, or update the patches and PATCHED"
        )
    with ExitStack() as stack:
        for name, (owner, attr) in _targets().items():
            original = owner.__dict__[attr]
            setattr(owner, attr, _REPLACEMENTS[name](original))
            stack.callback(setattr, owner, attr, original)
        yield
