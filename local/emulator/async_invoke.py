"""Asynchronous invocations (StartAsyncInvoke / GetAsyncInvoke / ListAsyncInvokes) of Amazon Nova Reel.

An invocation is ``InProgress`` for ``VIDEO_STEPS`` x ``step_seconds`` of the emulator's clock (the batch jobs'
clock), then ``Completed``. Nova Reel writes a folder per invocation id into the requested ``s3Uri``, holding
``output.mp4``, ``manifest.json`` and ``generation-status.json`` (docs/bedrock-facts.md, Images and video): the
emulator writes the three (a small valid MP4, ``local.emulator.media.mp4``, as long as the requested video; the two
JSON files, whose contents Bedrock does not document, with placeholder contents no client should read) through its
S3 client, the MP4 last. GetAsyncInvoke reports that folder, ``<s3Uri>/<invocationId>``, as
``outputDataConfig.s3OutputDataConfig.s3Uri`` (as AWS's Nova Reel examples read it: the video is that URI plus
``/output.mp4``). Like the batch jobs, status is computed lazily whenever anything reads it. An invocation hit by the
``video_failed`` fault, or whose output cannot be written, ends ``Failed`` with a ``failureMessage`` and no output.

Requests are checked as Nova Reel does (``taskType`` TEXT_VIDEO on v1:0 and v1:1, MULTI_SHOT_AUTOMATED on v1:1;
text length, duration, fps, dimension, seed); a prompt with a blocked word is refused at start with the content
filter's ``ValidationException``. A repeated ``clientRequestToken`` returns the first invocation's ARN.
"""

from __future__ import annotations

import json
import secrets
import string
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

from local.emulator import paging
from local.emulator.batch_io import S3Location
from local.emulator.errors import ApiError, validation_error
from local.emulator.families import base_model_id
from local.emulator.images import TEXT_FILTERED
from local.emulator.media import mp4

VIDEO_STEPS = 2  # an invocation is InProgress for this many step_seconds
OUTPUT_FILE, MANIFEST_FILE, STATUS_FILE = "output.mp4", "manifest.json", "generation-status.json"
REEL_MODELS = ("amazon.nova-reel-v1:0", "amazon.nova-reel-v1:1")
REEL_FPS, REEL_DIMENSION, REEL_SHOT_SECONDS = 24, "1280x720", 6
REEL_MAX_SEED = 2_147_483_646
MULTI_SHOT_MAX_SECONDS = 120
_ID_ALPHABET = string.ascii_lowercase + string.digits

TakeFault = Callable[[str], str | None]  # fault name -> "k of N" if one was injected, else None


@dataclass
class AsyncInvocation:
    seq: int
    invocation_id: str
    arn: str
    model_arn: str
    request: dict[str, Any]  # the StartAsyncInvoke request as received
    submit_time: datetime
    duration_seconds: int
    prompt: str
    status: str = "InProgress"
    last_modified: datetime | None = None
    end_time: datetime | None = None
    failure_message: str | None = None
    fault: str | None = None  # "video_failed: k of N" when the fault hit it

    @property
    def folder(self) -> S3Location:
        """``<s3Uri>/<invocationId>``: where the invocation's files are written."""
        uri = self.request["outputDataConfig"]["s3OutputDataConfig"]["s3Uri"]
        return S3Location.parse(uri).child(self.invocation_id)

    @property
    def output(self) -> S3Location:
        return self.folder.child(OUTPUT_FILE)

    def describe(self) -> dict[str, Any]:
        return {
            "invocationArn": self.arn,
            "modelArn": self.model_arn,
            "clientRequestToken": self.request.get("clientRequestToken"),
            "status": self.status,
            "failureMessage": self.failure_message,
            "submitTime": self.submit_time,
            "lastModifiedTime": self.last_modified or self.submit_time,
            "endTime": self.end_time,
            "outputDataConfig": {
                "s3OutputDataConfig": {
                    **self.request["outputDataConfig"]["s3OutputDataConfig"],
                    "s3Uri": self.folder.uri,
                }
            },
        }


def _malformed(detail: str) -> ApiError:
    return validation_error(f"Malformed input request: {detail}, please reformat your input and try again.")


def _dict(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _malformed(f"{where}: expected type: JSONObject")
    return value


def _text(params: dict[str, Any], where: str, max_length: int) -> str:
    text = params.get("text")
    if not isinstance(text, str):
        raise _malformed(f"{where}: required key [text] not found")
    if not 1 <= len(text) <= max_length:
        raise _malformed(f"{where}/text: expected length 1 to {max_length}, actual: {len(text)}")
    return text


def check_video_request(model_id: str, model_input: dict[str, Any], blocked: Callable[[str], bool]) -> tuple[str, int]:
    """Nova Reel's checks; returns (prompt, duration in seconds)."""
    base = base_model_id(model_id)
    if base not in REEL_MODELS:
        raise validation_error(
            f"The provided model identifier is invalid. (Emulator: StartAsyncInvoke serves {', '.join(REEL_MODELS)}.)"
        )
    task = model_input.get("taskType")
    config = _dict(model_input.get("videoGenerationConfig", {}), "#/videoGenerationConfig")
    if task == "TEXT_VIDEO":
        prompt = _text(_dict(model_input.get("textToVideoParams"), "#/textToVideoParams"), "#/textToVideoParams", 512)
        duration = config.get("durationSeconds", REEL_SHOT_SECONDS)
        if duration != REEL_SHOT_SECONDS:
            raise _malformed(f"#/videoGenerationConfig/durationSeconds: {duration} is not {REEL_SHOT_SECONDS}")
    elif task == "MULTI_SHOT_AUTOMATED" and base == "amazon.nova-reel-v1:1":
        params = _dict(model_input.get("multiShotAutomatedParams"), "#/multiShotAutomatedParams")
        prompt = _text(params, "#/multiShotAutomatedParams", 4000)
        duration = config.get("durationSeconds")
        if (
            not isinstance(duration, int)
            or not 2 * REEL_SHOT_SECONDS <= duration <= MULTI_SHOT_MAX_SECONDS
            or duration % REEL_SHOT_SECONDS
        ):
            raise _malformed(
                f"#/videoGenerationConfig/durationSeconds: {duration} is not a multiple of {REEL_SHOT_SECONDS} "
                f"from {2 * REEL_SHOT_SECONDS} to {MULTI_SHOT_MAX_SECONDS}"
            )
    else:
        raise validation_error(
            f"The emulator serves taskType TEXT_VIDEO (and MULTI_SHOT_AUTOMATED on v1:1), not {task}"
        )
    if config.get("fps", REEL_FPS) != REEL_FPS:
        raise _malformed(f"#/videoGenerationConfig/fps: {config['fps']} is not a valid enum value")
    if config.get("dimension", REEL_DIMENSION) != REEL_DIMENSION:
        raise _malformed(f"#/videoGenerationConfig/dimension: {config['dimension']} is not a valid enum value")
    seed = config.get("seed", 0)
    if not isinstance(seed, int) or not 0 <= seed <= REEL_MAX_SEED:
        raise _malformed(f"#/videoGenerationConfig/seed: {seed} is not in the range 0 to {REEL_MAX_SEED}")
    if blocked(prompt):
        raise validation_error(TEXT_FILTERED)
    return prompt, int(duration)


class AsyncInvocations:
    """The async invocations of one emulated account; ``state`` gives the clock, S3 client, region and step."""

    def __init__(self, state: Any, take_fault: TakeFault, blocked: Callable[[str], bool]) -> None:
        self._state = state
        self._take_fault = take_fault
        self._blocked = blocked
        self._invocations: dict[str, AsyncInvocation] = {}
        self._tokens: dict[str, str] = {}
        self._lock = threading.RLock()

    def _now(self) -> datetime:
        now: datetime = self._state.clock()
        return now.replace(microsecond=now.microsecond // 1000 * 1000)

    def start(self, params: dict[str, Any]) -> dict[str, Any]:
        prompt, duration = check_video_request(params["modelId"], params["modelInput"], self._blocked)
        with self._lock:
            token = params.get("clientRequestToken")
            if token in self._tokens:
                return {"invocationArn": self._invocations[self._tokens[token]].arn}
            invocation_id = "".join(secrets.choice(_ID_ALPHABET) for _ in range(12))
            region, account = self._state.region, self._state.account_id
            base = base_model_id(params["modelId"])
            invocation = AsyncInvocation(
                seq=len(self._invocations),
                invocation_id=invocation_id,
                arn=f"arn:aws:bedrock:{region}:{account}:async-invoke/{invocation_id}",
                model_arn=f"arn:aws:bedrock:{region}::foundation-model/{base}",
                request=dict(params),
                submit_time=self._now(),
                duration_seconds=duration,
                prompt=prompt,
            )
            injected = self._take_fault("video_failed")
            if injected:
                invocation.fault = f"video_failed: {injected}"
            self._invocations[invocation_id] = invocation
            if token is not None:
                self._tokens[token] = invocation_id
            return {"invocationArn": invocation.arn}

    def get(self, params: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            arn = params["invocationArn"]
            invocation = self._invocations.get(arn.rsplit("/", 1)[-1])
            if invocation is None or invocation.arn != arn:
                raise validation_error(f"The async invocation {arn} was not found")
            self._advance(invocation, self._now())
            return invocation.describe()

    def list_page(self, params: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            now = self._now()
            for invocation in self._invocations.values():
                self._advance(invocation, now)
            selected, token = paging.page(self._invocations.values(), params, lambda item: _matches(item, params))
            return {"asyncInvokeSummaries": [item.describe() for item in selected], "nextToken": token}

    def all(self) -> list[dict[str, Any]]:
        """Every invocation as GetAsyncInvoke describes it (advanced to now), oldest first."""
        with self._lock:
            now = self._now()
            for invocation in self._invocations.values():
                self._advance(invocation, now)
            return [item.describe() for item in self._invocations.values()]

    def _advance(self, invocation: AsyncInvocation, now: datetime) -> None:
        done_at = invocation.submit_time + timedelta(seconds=VIDEO_STEPS * self._state.step_seconds)
        if invocation.status != "InProgress" or now < done_at:
            return
        if invocation.fault:
            invocation.failure_message = (
                f"Emulated fault ({invocation.fault}): the video generation failed; no output was written"
            )
        else:
            folder = invocation.folder
            placeholder = {
                "emulator": "placeholder: Bedrock does not document this file",
                "invocationArn": invocation.arn,
            }
            files = [
                (MANIFEST_FILE, json.dumps(placeholder).encode(), "application/json"),
                (STATUS_FILE, json.dumps(placeholder).encode(), "application/json"),
                (
                    OUTPUT_FILE,
                    mp4(invocation.duration_seconds, f"{invocation.model_arn}/{invocation.prompt}"),
                    "video/mp4",
                ),
            ]
            try:
                for name, body, content_type in files:
                    target = folder.child(name)
                    self._state.s3.put_object(Bucket=target.bucket, Key=target.key, Body=body, ContentType=content_type)
            except ClientError as error:
                invocation.failure_message = f"Could not write the output to {folder.uri}: {error}"
        invocation.status = "Failed" if invocation.failure_message else "Completed"
        invocation.last_modified = invocation.end_time = done_at


def _matches(invocation: AsyncInvocation, params: dict[str, Any]) -> bool:
    return params.get("statusEquals") in (None, invocation.status)
