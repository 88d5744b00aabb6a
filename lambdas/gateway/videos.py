"""Video bots (Amazon Nova Reel): StartAsyncInvoke into the media bucket, poll GetAsyncInvoke with progress events,
then the MP4's presigned URL (docs/bedrock-facts.md, Images and video).

Nova Reel writes a folder per invocation id into the requested ``s3Uri``: ``output.mp4`` (the video),
``manifest.json`` and ``generation-status.json``. The video's key comes from the completed GetAsyncInvoke's
``outputDataConfig`` (the invocation's folder, which AWS's examples extend with ``/output.mp4``), and is checked to
exist before its URL is handed out.

A 6-second video takes about 90 s on Bedrock: the answer streams a ``Progress`` event per poll (Poe
``replace_response``), which also keeps idle connections alive, and gives up after ``video_max_seconds``.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from typing import Any

from lambdas.gateway.attachments import reject_attachments
from lambdas.gateway.clients import AwsClients
from lambdas.gateway.config import BotConfig, GatewaySettings
from lambdas.gateway.errors import USER_CAUSED, GatewayError, from_bedrock
from lambdas.gateway.events import Event, Finished, MediaFile, Progress, record_usage
from lambdas.gateway.guardrails import check_prompt
from lambdas.gateway.media import MediaStore
from lambdas.gateway.parameters import check_capabilities
from lambdas.gateway.translate import ChatRequest, PriceBook, Usage

VIDEO_SECONDS = 6
MAX_VIDEO_PROMPT = 512
REEL_OUTPUT = "output.mp4"  # the video in the invocation's folder


def reel_input(prompt: str) -> dict[str, Any]:
    return {
        "taskType": "TEXT_VIDEO",
        "textToVideoParams": {"text": prompt[:MAX_VIDEO_PROMPT]},
        "videoGenerationConfig": {"durationSeconds": VIDEO_SECONDS, "fps": 24, "dimension": "1280x720"},
    }


def video_key(status: Mapping[str, Any], invocation_id: str, bucket: str) -> str:
    """The key of ``output.mp4`` in ``bucket``, from a completed GetAsyncInvoke answer. Its ``s3Uri`` is the
    invocation's folder ``<s3Uri>/<invocation id>``; a URI without the id (the one requested) gets it appended, so
    either reading of the service finds the file. A URI in another bucket is an upstream error."""
    uri = str(status["outputDataConfig"]["s3OutputDataConfig"]["s3Uri"]).rstrip("/")
    found_bucket, _, folder = uri.removeprefix("s3://").partition("/")
    if found_bucket != bucket:
        raise GatewayError(
            502, f"Nova Reel wrote to {uri}, not to the media bucket.", allow_retry=True, code="video_missing"
        )
    if folder.rsplit("/", 1)[-1] != invocation_id:
        folder = f"{folder}/{invocation_id}" if folder else invocation_id
    return f"{folder}/{REEL_OUTPUT}"


class VideoBot:
    def __init__(self, config: BotConfig, clients: AwsClients, prices: PriceBook, settings: GatewaySettings) -> None:
        self.config = config
        self._clients = clients
        self._settings = settings
        self._media = MediaStore(clients, settings)

    async def start(self, chat: ChatRequest) -> AsyncIterator[Event]:
        reject_attachments(self.config, chat)
        check_capabilities(self.config, chat)
        users = [message.text for message in chat.messages if message.role == "user" and message.text.strip()]
        if not users:
            raise GatewayError(400, "Describe the video you want in a message.", error_type=USER_CAUSED)
        bucket = self._media.require()
        prefix = self._media.prefix(self.config.name)
        prompt = users[-1].strip()
        try:
            runtime = await self._clients.bedrock_runtime(self.config.region)
            await check_prompt(self.config, runtime, prompt[:MAX_VIDEO_PROMPT])  # the bot's guardrail, if any
            started = await runtime.start_async_invoke(
                modelId=self.config.model_id,
                modelInput=reel_input(prompt),
                outputDataConfig={"s3OutputDataConfig": {"s3Uri": f"s3://{bucket}/{prefix}"}},
                clientRequestToken=uuid.uuid4().hex,
            )
        except GatewayError:
            raise
        except Exception as error:
            raise from_bedrock(error) from error
        return self._follow(runtime, started["invocationArn"])

    async def _follow(self, runtime: Any, arn: str) -> AsyncIterator[Event]:
        began = time.monotonic()
        while True:
            try:
                status = await runtime.get_async_invoke(invocationArn=arn)
            except Exception as error:
                raise from_bedrock(error) from error
            elapsed = time.monotonic() - began
            if status["status"] == "Completed":
                break
            if status["status"] == "Failed":
                message = status.get("failureMessage") or "the video generation failed"
                raise GatewayError(502, f"Nova Reel: {message}", allow_retry=True, code="video_failed")
            if elapsed > self._settings.video_max_seconds:
                raise GatewayError(504, "The video took too long; try again later.", allow_retry=True, code="timeout")
            yield Progress(f"Generating a {VIDEO_SECONDS}-second video... {int(elapsed)} s")
            await asyncio.sleep(self._settings.video_poll_seconds)
        invocation_id = arn.rsplit("/", 1)[-1]
        key = video_key(status, invocation_id, self._media.require())
        if not await self._media.exists(key):
            raise GatewayError(
                502,
                f"Nova Reel reported the video done, but {key} is not in the media bucket; please retry.",
                allow_retry=True,
                code="video_missing",
            )
        url = await self._media.url(key)
        yield MediaFile(url=url, content_type="video/mp4", name=f"{invocation_id}.mp4")
        cost = self.config.prices.per_video_second * VIDEO_SECONDS
        finished = Finished("end_turn", Usage(), round(elapsed * 1000), None, cost)
        record_usage(self.config, finished)
        yield finished
