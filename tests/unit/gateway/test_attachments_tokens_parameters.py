"""Attachments -> Converse blocks, the token estimate and context check, user parameters: pure, or with a fake
fetcher."""

from __future__ import annotations

import asyncio
import base64
import re
from typing import Any

import pytest

from lambdas.gateway.attachments import (
    Fetcher,
    decode_data_url,
    document_name,
    read_attachments,
    sniff_image,
)
from lambdas.gateway.config import BotConfig, BotConfigError, load_bots, parse_bots
from lambdas.gateway.errors import GatewayError
from lambdas.gateway.images import REQUEST_BODIES
from lambdas.gateway.parameters import apply_text_parameters, image_parameter_controls, image_settings
from lambdas.gateway.tokens import IMAGE_TOKENS, TokenCount, check_context, estimate_tokens
from lambdas.gateway.translate import Attachment, ChatMessage, ChatRequest, converse_request
from lambdas.shared.model_families import image_sizes_of

HAIKU = "anthropic.claude-3-haiku-20240307-v1:0"
PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 8


def bot(**fields: Any) -> BotConfig:
    return BotConfig.model_validate({"name": "b", "model_id": HAIKU, **fields})


class FakeFetcher(Fetcher):
    def __init__(self, files: dict[str, tuple[bytes, str]]) -> None:
        super().__init__(1_000, 1.0)
        self.files = files
        self.fetched: list[str] = []

    async def fetch(self, url: str, name: str) -> tuple[bytes, str]:
        self.fetched.append(url)
        return self.files[url]


def read(config: BotConfig, *messages: ChatMessage, files: dict[str, tuple[bytes, str]] | None = None) -> ChatRequest:
    return asyncio.run(read_attachments(config, ChatRequest(messages=messages), FakeFetcher(files or {})))


def test_an_image_and_a_document_become_blocks_before_the_text() -> None:
    # GIVEN a bot reading images and documents and a message with a PNG and a PDF
    config = bot(capabilities={"images_in": True, "documents": True})
    message = ChatMessage(
        "user",
        "Compare",
        (Attachment("u1", "image/jpeg", "a.jpg"), Attachment("u2", "application/pdf", "My report!.pdf")),
    )
    chat = read(config, message, files={"u1": (PNG, "image/png"), "u2": (b"%PDF", "application/pdf")})
    # WHEN translated THEN image (its bytes say png), document (a Converse-safe name), then the text
    content = converse_request(config, chat)["messages"][0]["content"]
    assert content[0] == {"image": {"format": "png", "source": {"bytes": PNG}}}
    assert content[1]["document"]["name"] == "My report" and content[1]["document"]["format"] == "pdf"
    assert content[2] == {"text": "Compare"}


def test_a_document_alone_gets_a_text_block_and_earlier_files_are_not_fetched() -> None:
    config = bot(capabilities={"documents": True})
    old = ChatMessage("user", "first", (Attachment("gone", "application/pdf", "old.pdf"),))
    new = ChatMessage("user", "", (Attachment("u", "text/csv", "t.csv"),))
    fetcher = FakeFetcher({"u": (b"a,b", "text/csv")})
    chat = asyncio.run(
        read_attachments(config, ChatRequest(messages=(old, ChatMessage("assistant", "ok"), new)), fetcher)
    )
    messages = converse_request(config, chat)["messages"]
    assert fetcher.fetched == ["u"]
    assert messages[0]["content"][0] == {"text": "[attachment 'old.pdf' (application/pdf) not shown]"}
    assert [next(iter(block)) for block in messages[2]["content"]] == ["document", "text"]


def test_parsed_text_is_inlined_without_a_download_on_any_text_bot() -> None:
    message = ChatMessage("user", "Q", (Attachment("u", "application/pdf", "r.pdf", parsed_content="body"),))
    chat = read(bot(capabilities={"images_in": True}), message)  # no documents: Poe's parsed text is used
    assert chat.messages[0].blocks == ({"text": '<attachment name="r.pdf">\nbody\n</attachment>'},)


@pytest.mark.parametrize(
    ("capabilities", "attachment", "expected"),
    [
        ({}, Attachment("u", "image/png", "a.png"), "cannot read images"),
        ({"images_in": True}, Attachment("u", "application/pdf", "a.pdf"), "cannot read pdf documents"),
        ({"images_in": True}, Attachment("u", "image/tiff", "a.tif"), "image/tiff"),
        ({"documents": True}, Attachment("u", "application/zip", "a.zip"), "application/zip"),
    ],
)
def test_unsupported_attachments_are_user_caused_400s(
    capabilities: dict[str, bool], attachment: Attachment, expected: str
) -> None:
    with pytest.raises(GatewayError) as error:
        read(bot(capabilities=capabilities), ChatMessage("user", "x", (attachment,)))
    assert (
        error.value.status == 400 and error.value.error_type == "user_caused_error" and expected in error.value.message
    )


def test_data_urls_sniffing_and_document_names() -> None:
    assert decode_data_url("data:image/png;base64," + base64.b64encode(PNG).decode(), 100) == (PNG, "image/png")
    assert decode_data_url("data:,hello%20world", 100) == (b"hello world", "text/plain")
    with pytest.raises(GatewayError, match="over 10 bytes"):
        decode_data_url("data:image/png;base64," + "A" * 100, 10)
    assert [sniff_image(PNG), sniff_image(b"GIF89a..."), sniff_image(b"RIFF1234WEBPVP8"), sniff_image(b"x")] == [
        "png",
        "gif",
        "webp",
        None,
    ]
    used: set[str] = set()
    assert [document_name(n, used) for n in ("a  b.pdf", "a b.docx", "#$.txt")] == ["a b", "a b (2)", "document"]


def test_the_estimate_counts_characters_and_media_and_the_limit_refuses() -> None:
    request = {
        "system": [{"text": "abcd"}],
        "messages": [{"role": "user", "content": [{"image": {}}, {"text": "abcdefgh!"}]}],
    }
    assert estimate_tokens(request) == 1 + IMAGE_TOKENS + 3
    config = bot(context_tokens=100)
    check_context(config, TokenCount(100, "count_tokens"))
    with pytest.raises(GatewayError) as error:
        check_context(config, TokenCount(101, "estimate"))
    assert error.value.error_type == "user_message_too_long" and error.value.code == "context_length_exceeded"


def test_image_settings_and_bodies() -> None:
    canvas = bot(model_id="amazon.nova-canvas-v1:0", modality="image", image_format="amazon")
    settings = image_settings(canvas, {"width": 1280, "height": "768", "seed": "5", "number_of_images": 2.0})
    body = REQUEST_BODIES["amazon"]("cat", settings)
    assert body["imageGenerationConfig"] == {
        "numberOfImages": 2,
        "width": 1280,
        "height": 768,
        "quality": "standard",
        "seed": 5,
    }
    stability = bot(model_id="stability.sd3-5-large-v1:0", modality="image", image_format="stability")
    body = REQUEST_BODIES["stability"](
        "cat", image_settings(stability, {"aspect_ratio": "9:16", "negative_prompt": "x"})
    )
    assert body["aspect_ratio"] == "9:16" and body["negative_prompt"] == "x" and "seed" not in body
    with pytest.raises(GatewayError, match="Give both"):
        image_settings(canvas, {"width": 1024})
    controls = image_parameter_controls(stability)
    assert controls["sections"][0]["controls"][0]["options"][1] == {"value": "16:9", "width": 16, "height": 9}


def test_image_options_are_configurable_and_checked() -> None:
    options = {"sizes": ["512x512"], "qualities": [], "max_images": 1, "max_seed": 0, "negative_prompt": False}
    config = bot(
        model_id="amazon.titan-image-generator-v2:0", modality="image", image_format="amazon", image_options=options
    )
    assert image_settings(config, {}).width == 512
    for parameters in ({"seed": 1}, {"negative_prompt": "x"}, {"quality": "premium"}):
        with pytest.raises(GatewayError):
            image_settings(config, parameters)
    with pytest.raises(BotConfigError, match="image_options"):
        parse_bots({"bots": {"t": {"model_id": HAIKU, "image_options": options}}})
    with pytest.raises(BotConfigError, match="WIDTHxHEIGHT"):
        parse_bots(
            {
                "bots": {
                    "t": {
                        "model_id": "amazon.nova-canvas-v1:0",
                        "modality": "image",
                        "image_format": "amazon",
                        "image_options": {"sizes": ["big"]},
                    }
                }
            }
        )


def test_text_parameters_apply_within_limits_and_the_budget_reaches_the_request() -> None:
    thinking = bot(
        inference={"max_tokens": 4096},
        additional_request_fields={"thinking": {"type": "enabled", "budget_tokens": 1024}},
    )
    chat = ChatRequest(
        messages=(ChatMessage("user", "hi"),), parameters={"thinking_budget": 2000, "temperature": "0.5"}
    )
    applied = apply_text_parameters(thinking, chat)
    request = converse_request(thinking, applied)
    assert request["additionalModelRequestFields"]["thinking"] == {"type": "enabled", "budget_tokens": 2000}
    # the temperature is read, but Claude with thinking on takes none but 1, so it is left to the model
    assert applied.temperature == 0.5 and "temperature" not in request["inferenceConfig"]
    assert apply_text_parameters(thinking, ChatRequest(messages=chat.messages)) == ChatRequest(messages=chat.messages)


@pytest.mark.parametrize(
    ("model_id", "image_format", "options", "expected"),
    [
        # Titan Image Generator takes only its table's sizes: 1280x720 (fine on Nova Canvas) is not one of them
        ("amazon.titan-image-generator-v2:0", "amazon", {"sizes": ["1024x1024", "1280x720"]}, "size '1280x720'"),
        ("amazon.nova-canvas-v1:0", "amazon", {"sizes": ["1173x640"]}, "multiples of 16"),
        ("amazon.nova-canvas-v1:0", "amazon", {"sizes": ["2048x2048"]}, "under 4194304 pixels"),
        ("stability.sd3-5-large-v1:0", "stability", {"aspect_ratios": ["7:3"]}, "aspect ratio '7:3'"),
    ],
)
def test_a_bot_cannot_offer_an_image_size_its_model_refuses(
    model_id: str, image_format: str, options: dict[str, Any], expected: str
) -> None:
    # GIVEN an image bot whose options name a size (or ratio) the model does not generate
    entry = {"model_id": model_id, "modality": "image", "image_format": image_format, "image_options": options}
    # WHEN bots are parsed THEN the start fails naming the bot's option and the model's rule
    with pytest.raises(BotConfigError, match=re.escape(expected)):
        parse_bots({"bots": {"img": entry}})


def test_the_shipped_image_bots_offer_only_sizes_their_models_take() -> None:
    # GIVEN the shipped image bots WHEN their offered sizes are checked against the model registry
    # THEN every size and aspect ratio passes (the same check refuses a bad bots.json at start)
    for config in load_bots().values():
        if config.modality != "image":
            continue
        sizes = image_sizes_of(config.model_id)
        assert sizes is not None, config.name
        assert not [size for size in config.images.sizes if sizes.size_problem(size)]
        assert not [ratio for ratio in config.images.aspect_ratios if sizes.aspect_ratio_problem(ratio)]
