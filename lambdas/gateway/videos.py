"""Video bots (Amazon Nova Reel): StartAsyncInvoke into the media bucket, poll GetAsyncInvoke with progress events,
then the MP4's presigned URL (gateway.md §3.6).

A 6-second video takes about 90 s on Bedrock: the answer streams a ``Progress`` event per poll (Poe
``replace_response``), which also keeps idle connections alive, and gives up after ``video_max_seconds``.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
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


def reel_input(prompt: str) -> dict[str, Any]:
    return {
        "taskType": "TEXT_VIDEO",
        "textToVideoParams": {"text": prompt[:MAX_VIDEO_PROMPT]},
        "videoGenerationConfig": {"durationSeconds": VIDEO_SECONDS, "fps": 24, "dimension": "1280x720"},
    }


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
        return self._follow(runtime, started["invocationArn"], prefix)

    async def _follow(self, runtime: Any, arn: str, prefix: str) -> AsyncIterator[Event]:
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
        url = await self._media.url(f"{prefix}/{invocation_id}/output.mp4")
        yield MediaFile(url=url, content_type="video/mp4", name=f"{invocation_id}.mp4")
        cost = self.config.prices.per_video_second * VIDEO_SECONDS
        finished = Finished("end_turn", Usage(), round(elapsed * 1000), None, cost)
        record_usage(self.config, finished)
        yield finished
