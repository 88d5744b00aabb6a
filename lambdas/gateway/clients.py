"""The AWS client service: one pooled aiobotocore session, one client per (service, region), closed at shutdown, and
the read pacer of streamed answers (``lambdas.gateway.pacing``) when ``GATEWAY_STREAM_INTERVAL_MS`` turns it on.

Endpoints come from boto's standard configuration (``AWS_ENDPOINT_URL_BEDROCK_RUNTIME``), so the same code talks to
Bedrock or to the local emulator.
"""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from typing import Any

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session

from lambdas.gateway.config import GatewaySettings
from lambdas.gateway.pacing import ReadPacer


class AwsClients:
    def __init__(self, settings: GatewaySettings) -> None:
        self._session = get_session()
        self._config = AioConfig(
            connect_timeout=settings.connect_timeout,
            read_timeout=settings.read_timeout,
            retries={"mode": settings.retry_mode, "total_max_attempts": settings.max_attempts},
            max_pool_connections=settings.max_pool_connections,
        )
        self._stack = AsyncExitStack()
        self._clients: dict[tuple[str, str], Any] = {}
        self._lock = asyncio.Lock()
        # one pacer for every streamed answer of the process (its one timer), None when pacing is off
        self.pacer = ReadPacer(settings.stream_interval_ms / 1000) if settings.stream_interval_ms else None

    async def client(self, service: str, region: str) -> Any:
        key = (service, region)
        if key not in self._clients:
            async with self._lock:
                if key not in self._clients:
                    creator = self._session.create_client(service, region_name=region, config=self._config)
                    self._clients[key] = await self._stack.enter_async_context(creator)
        return self._clients[key]

    async def bedrock_runtime(self, region: str) -> Any:
        return await self.client("bedrock-runtime", region)

    async def close(self) -> None:
        self._clients.clear()
        await self._stack.aclose()
