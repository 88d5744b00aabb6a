"""Media request bodies and answers, without I/O."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from lambdas.gateway.errors import GatewayError
from lambdas.gateway.images import REQUEST_BODIES, image_payloads
from lambdas.gateway.videos import reel_input, video_key


def test_amazon_and_stability_bodies_follow_their_formats() -> None:
    # GIVEN a prompt WHEN each image format builds its InvokeModel body THEN each has its own shape
    amazon = REQUEST_BODIES["amazon"]("a cat")
    stability = REQUEST_BODIES["stability"]("a cat")
    assert amazon["taskType"] == "TEXT_IMAGE" and amazon["textToImageParams"] == {"text": "a cat"}
    assert stability == {"prompt": "a cat", "mode": "text-to-image", "aspect_ratio": "1:1", "output_format": "png"}


def test_image_payloads_decode_the_images() -> None:
    png = b"\x89PNG\r\n\x1a\nrest"
    assert image_payloads({"images": [base64.b64encode(png).decode()]}) == [png]


@pytest.mark.parametrize(
    "answer",
    [
        {"seeds": [1], "finish_reasons": ["Filter reason: prompt"], "images": []},
        {"images": [], "error": "blocked by the content filter"},
    ],
)
def test_filtered_images_are_user_caused_errors(answer: dict[str, object]) -> None:
    with pytest.raises(GatewayError) as error:
        image_payloads(answer)
    assert error.value.error_type == "user_caused_error" and not error.value.allow_retry


def test_an_answer_without_images_is_a_retryable_upstream_error() -> None:
    with pytest.raises(GatewayError) as error:
        image_payloads({"images": ["not base64!"]})
    assert error.value.status == 502 and error.value.allow_retry


def test_reel_input_is_a_six_second_text_to_video_request() -> None:
    body = reel_input("x" * 1000)
    assert body["taskType"] == "TEXT_VIDEO" and len(body["textToVideoParams"]["text"]) == 512
    assert body["videoGenerationConfig"]["durationSeconds"] == 6


def reel_status(uri: str) -> dict[str, Any]:
    return {"status": "Completed", "outputDataConfig": {"s3OutputDataConfig": {"s3Uri": uri}}}


@pytest.mark.parametrize(
    "uri",
    [
        "s3://media/media/reel/2026/abc/inv123",  # the invocation's folder, as AWS's Nova Reel examples read it
        "s3://media/media/reel/2026/abc/inv123/",
        "s3://media/media/reel/2026/abc",  # the requested s3Uri, should the service answer that instead
    ],
)
def test_the_video_key_is_output_mp4_in_the_invocations_folder(uri: str) -> None:
    # GIVEN a completed GetAsyncInvoke answer WHEN the video's key is derived
    # THEN it is <requested prefix>/<invocation id>/output.mp4 whichever URI the answer carries
    assert video_key(reel_status(uri), "inv123", "media") == "media/reel/2026/abc/inv123/output.mp4"


def test_a_video_outside_the_media_bucket_is_an_upstream_error() -> None:
    with pytest.raises(GatewayError, match="not to the media bucket"):
        video_key(reel_status("s3://elsewhere/x/inv123"), "inv123", "media")
