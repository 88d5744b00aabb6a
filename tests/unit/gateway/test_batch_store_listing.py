"""``GET /v1/files``'s listing (``BatchStore.list_files``): one HeadObject per listed file (ListObjectsV2 answers no
user metadata, so no owner), at most ``HEAD_CONCURRENCY`` at once, the order and the page kept."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from lambdas.gateway.batch_store import FILES, HEAD_CONCURRENCY, BatchStore, _metadata, newest_first_hex
from lambdas.gateway.config import GatewaySettings, load_bots

pytestmark = pytest.mark.anyio
BUCKET = "batch-data"


class ListingS3:
    """An S3 of uploaded files (key -> owner) in ListObjectsV2's order, pages of ``page_size``; each HeadObject
    yields to the loop before it answers, so HEADs started together overlap, and ``most_in_flight`` records how many
    did."""

    def __init__(self, owners: dict[str, str], page_size: int) -> None:
        self.owners = owners
        self.page_size = page_size
        self.in_flight = 0
        self.most_in_flight = 0
        self.heads: list[str] = []

    def get_paginator(self, name: str) -> ListingS3:
        assert name == "list_objects_v2"
        return self

    async def _pages(self, Bucket: str, Prefix: str, StartAfter: str = "") -> AsyncIterator[dict[str, Any]]:  # noqa: N803 - boto's names
        keys = sorted(key for key in self.owners if key.startswith(Prefix) and key > StartAfter)
        for start in range(0, len(keys), self.page_size):
            page = keys[start : start + self.page_size]
            yield {"Contents": [{"Key": key, "Size": 10} for key in page]}

    def paginate(self, **kwargs: Any) -> AsyncIterator[dict[str, Any]]:
        return self._pages(**kwargs)

    async def head_object(self, Bucket: str, Key: str) -> dict[str, Any]:  # noqa: N803 - boto's names
        self.heads.append(Key)
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        for _ in range(3):
            await asyncio.sleep(0)
        self.in_flight -= 1
        return {"ContentLength": 10, "Metadata": _metadata(self.owners[Key], "in.jsonl", "batch", 1)}


class Clients:
    def __init__(self, s3: ListingS3) -> None:
        self.s3 = s3

    async def client(self, service: str, region: str) -> ListingS3:
        return self.s3


def store_of(s3: ListingS3) -> BatchStore:
    settings = GatewaySettings(bots=load_bots(), access_keys={}, batch_bucket=BUCKET)
    return BatchStore(Clients(s3), settings)  # type: ignore[arg-type]


def uploads(count: int) -> dict[str, str]:
    """``count`` files, every third one the key's (``key:mine``), the others another key's; newest first by key."""
    return {
        f"{FILES}file-{newest_first_hex(1_000_000 - n)}": "key:mine" if n % 3 == 0 else "key:theirs"
        for n in range(count)
    }


async def test_the_listing_heads_at_most_head_concurrency_files_at_once_in_order() -> None:
    # GIVEN 100 files in pages of 40, a third of them the key's
    files = uploads(100)
    s3 = ListingS3(files, page_size=40)
    # WHEN the key lists its files
    found, more = await store_of(s3).list_files("key:mine")
    # THEN it gets exactly its own, newest first, and no more pages
    assert [info.key for info in found] == sorted(key for key, owner in files.items() if owner == "key:mine")
    assert more is False
    # AND every file was HEADed once (the owner is only in its metadata), never more than HEAD_CONCURRENCY at once,
    # though HEADs did overlap
    assert sorted(s3.heads) == sorted(files)
    assert 1 < s3.most_in_flight <= HEAD_CONCURRENCY


async def test_a_full_page_stops_the_listing_and_says_there_is_more() -> None:
    # GIVEN 200 files, a third of them the key's, in one listing page
    files = uploads(200)
    s3 = ListingS3(files, page_size=1000)
    # WHEN the key asks for 5
    found, more = await store_of(s3).list_files("key:mine", limit=5)
    # THEN it gets its 5 newest and has_more, and the HEADs stopped within one round of HEAD_CONCURRENCY after them
    mine = sorted(key for key, owner in files.items() if owner == "key:mine")
    assert [info.key for info in found] == mine[:5] and more is True
    assert len(s3.heads) <= 3 * 6 + HEAD_CONCURRENCY
