"""Media storage: generated images and videos live in the media bucket and reach users as presigned URLs."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from botocore.exceptions import ClientError

from lambdas.gateway.clients import AwsClients
from lambdas.gateway.config import GatewaySettings
from lambdas.gateway.errors import GatewayError


class MediaStore:
    def __init__(self, clients: AwsClients, settings: GatewaySettings) -> None:
        self._clients = clients
        self._settings = settings

    def require(self) -> str:
        """The media bucket, or a 503 saying it is not configured (checked before any Bedrock call)."""
        if not self._settings.media_bucket:
            raise GatewayError(503, "Media bots need a media bucket (GATEWAY_MEDIA_BUCKET).", code="no_media_bucket")
        return self._settings.media_bucket

    def prefix(self, bot: str) -> str:
        """A fresh key prefix for one answer of ``bot``."""
        return f"media/{bot}/{datetime.now(UTC):%Y/%m/%d}/{uuid.uuid4().hex}"

    async def put(self, key: str, body: bytes, content_type: str) -> str:
        s3 = await self._clients.client("s3", self._settings.media_region)
        await s3.put_object(Bucket=self.require(), Key=key, Body=body, ContentType=content_type)
        return await self.url(key)

    async def exists(self, key: str) -> bool:
        """Whether ``key`` is in the media bucket (HeadObject, allowed by the s3:GetObject grant)."""
        s3 = await self._clients.client("s3", self._settings.media_region)
        try:
            await s3.head_object(Bucket=self.require(), Key=key)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        return True

    async def url(self, key: str) -> str:
        s3 = await self._clients.client("s3", self._settings.media_region)
        url: str = await s3.generate_presigned_url(
            "get_object", Params={"Bucket": self.require(), "Key": key}, ExpiresIn=self._settings.media_url_seconds
        )
        return url
