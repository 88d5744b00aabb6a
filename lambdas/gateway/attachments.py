"""Attachments -> Converse content blocks (formats: docs/bedrock-facts.md, Runtime: Converse and
ConverseStream), by the bot's capabilities.

- images (png/jpeg/gif/webp) -> ``image`` blocks, for bots with ``images_in``;
- documents (pdf/csv/doc/docx/xls/xlsx/html/txt/md) -> ``document`` blocks, for bots with ``documents``;
- text (``text/*``, JSON, XML) with Poe's ``parsed_content`` (or any file with it, on a bot without ``documents``)
  -> inlined as a text block; plain text without it is downloaded and inlined;
- anything else, or a capability the bot lacks -> a 400 ``user_caused_error`` saying what the bot accepts.

Only the last user message's files are downloaded (Poe's URLs live 10 minutes): earlier ones are inlined from
``parsed_content`` or named in a short note. URLs are ``data:`` URLs (decoded here) or public http(s) URLs fetched
with httpx, with a size cap (``GatewaySettings.attachment_max_bytes``) and a timeout. The declared type of an image is
checked against its bytes (the magic number wins). Converse takes at most 20 images and 5 documents per request.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import ipaddress
import mimetypes
import re
import urllib.parse
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import httpx

from lambdas.gateway.config import BotConfig, GatewaySettings
from lambdas.gateway.errors import USER_CAUSED, GatewayError
from lambdas.gateway.translate import Attachment, ChatMessage, ChatRequest

IMAGE_FORMATS = {
    "image/png": "png",
    "image/jpeg": "jpeg",
    "image/jpg": "jpeg",
    "image/pjpeg": "jpeg",
    "image/gif": "gif",
    "image/webp": "webp",
}
DOCUMENT_FORMATS = {
    "application/pdf": "pdf",
    "text/csv": "csv",
    "application/msword": "doc",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "docx",
    "application/vnd.ms-excel": "xls",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "xlsx",
    "text/html": "html",
    "text/plain": "txt",
    "text/markdown": "md",
    "text/x-markdown": "md",
}
TEXT_TYPES = ("application/json", "application/xml", "application/x-yaml", "application/yaml")
MAX_IMAGES, MAX_DOCUMENTS = 20, 5
GENERIC_TYPES = ("", "application/octet-stream", "binary/octet-stream")


def unsupported(message: str) -> GatewayError:
    return GatewayError(400, message, error_type=USER_CAUSED, code="unsupported_attachment")


def media_type(value: str) -> str:
    return value.split(";", 1)[0].strip().lower()


def is_text(content_type: str) -> bool:
    return content_type.startswith("text/") or content_type in TEXT_TYPES


def sniff_image(data: bytes) -> str | None:
    """The image format the bytes say, if any."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return None


def document_name(name: str, used: set[str]) -> str:
    """A Converse document name (letters, digits, single spaces, hyphens, parentheses, brackets), unique."""
    stem = name.rsplit(".", 1)[0] if "." in name else name
    clean = re.sub(r"\s+", " ", re.sub(r"[^A-Za-z0-9\s\-()\[\]]", " ", stem)).strip()[:100] or "document"
    candidate, number = clean, 2
    while candidate in used:
        candidate, number = f"{clean} ({number})", number + 1
    used.add(candidate)
    return candidate


def inline_text(name: str, text: str) -> dict[str, Any]:
    return {"text": f'<attachment name="{name}">\n{text}\n</attachment>'}


def decode_data_url(url: str, limit: int) -> tuple[bytes, str]:
    """(bytes, media type) of a ``data:[type][;base64],payload`` URL."""
    header, comma, payload = url[5:].partition(",")
    if not comma:
        raise unsupported("The attachment's data: URL has no ',' before its data.")
    parts = header.split(";")
    content_type = media_type(parts[0]) if parts[0] else "text/plain"
    if len(payload) * 3 // 4 > limit:
        raise too_large(limit)
    try:
        data = (
            base64.b64decode(payload, validate=True)
            if "base64" in parts[1:]
            else urllib.parse.unquote_to_bytes(payload)
        )
    except (binascii.Error, ValueError):
        raise unsupported("The attachment's data: URL is not valid base64.") from None
    return data, content_type


def unreadable_url(name: str, reason: str) -> GatewayError:
    return unsupported(
        f"The attachment '{name}' has a URL that cannot be used ({reason[:120]}); send a valid http(s) or data: URL."
    )


def too_large(limit: int) -> GatewayError:
    return GatewayError(
        400,
        f"An attachment is over {limit:,} bytes; send a smaller file.",
        error_type=USER_CAUSED,
        code="attachment_too_large",
    )


def private_address(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    return not ip.is_global or ip.is_multicast


class Fetcher:
    """Downloads attachment URLs: ``data:`` decoded, http(s) fetched with a size cap and a timeout.

    Hosts that resolve to private, loopback or link-local addresses (instance metadata, the VPC) are refused unless
    ``private_hosts`` (``GATEWAY_ATTACHMENT_PRIVATE_HOSTS=true``, for local runs); every redirect hop is checked."""

    def __init__(self, max_bytes: int, timeout: float, private_hosts: bool = False) -> None:
        self.max_bytes = max_bytes
        self.timeout = timeout
        self.private_hosts = private_hosts

    @classmethod
    def from_settings(cls, settings: GatewaySettings) -> Fetcher:
        return cls(settings.attachment_max_bytes, settings.attachment_timeout, settings.attachment_private_hosts)

    async def _check_host(self, request: httpx.Request) -> None:
        if self.private_hosts:
            return
        host = request.url.host
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, request.url.port or 443)
        except OSError:
            raise httpx.ConnectError(f"cannot resolve {host}", request=request) from None
        if any(private_address(str(info[4][0])) for info in infos):
            raise GatewayError(
                400,
                "Attachment URLs must be public http(s) URLs.",
                error_type=USER_CAUSED,
                code="attachment_unavailable",
            )

    async def fetch(self, url: str, name: str) -> tuple[bytes, str]:
        """The bytes and media type behind ``url``. A URL that cannot be parsed or fetched is the client's problem: a
        400 naming the attachment (never a 500 or a 502)."""
        if url.startswith("data:"):
            return decode_data_url(url, self.max_bytes)
        try:
            scheme = urllib.parse.urlsplit(url).scheme
            host = httpx.URL(url).host
        except (ValueError, httpx.InvalidURL) as error:  # e.g. "http://[::1", "http://[x]/a.png", a NUL in the host
            raise unreadable_url(name, str(error)) from None
        if scheme not in ("http", "https"):
            raise unsupported(f"The attachment '{name}' must be an http(s) or data: URL.")
        if not host:
            raise unreadable_url(name, "it names no host")
        body = bytearray()
        try:
            async with (
                httpx.AsyncClient(
                    timeout=self.timeout,
                    follow_redirects=True,
                    max_redirects=3,
                    event_hooks={"request": [self._check_host]},
                ) as http,
                http.stream("GET", url) as response,
            ):
                if response.status_code != 200:
                    raise GatewayError(
                        400,
                        f"The attachment '{name}' could not be downloaded (HTTP {response.status_code}); "
                        "upload it again.",
                        error_type=USER_CAUSED,
                        code="attachment_unavailable",
                    )
                declared = response.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > self.max_bytes:
                    raise too_large(self.max_bytes)
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > self.max_bytes:
                        raise too_large(self.max_bytes)
                return bytes(body), media_type(response.headers.get("content-type", ""))
        except (ValueError, httpx.InvalidURL) as error:  # a host the client cannot encode (IDNA), found on the way
            raise unreadable_url(name, str(error)) from None
        except httpx.HTTPError as error:
            raise GatewayError(
                400,
                f"The attachment '{name}' could not be downloaded ({type(error).__name__}): check that its URL is "
                "public and reachable, or send the file as a data: URL.",
                error_type=USER_CAUSED,
                code="attachment_unavailable",
            ) from None


def declared_type(attachment: Attachment) -> str:
    declared = media_type(attachment.content_type)
    if declared in GENERIC_TYPES:
        if attachment.url.startswith("data:"):
            declared = media_type(attachment.url[5:].split(",", 1)[0].split(";", 1)[0])
        if declared in GENERIC_TYPES and attachment.name:
            declared = media_type(mimetypes.guess_type(attachment.name)[0] or "")
    return declared


class AttachmentReader:
    """One request's attachments as Converse blocks for one bot."""

    def __init__(self, bot: BotConfig, fetcher: Fetcher) -> None:
        self.bot = bot
        self.fetcher = fetcher
        self.images = 0
        self.documents: set[str] = set()

    def _no_capability(self, what: str, name: str) -> GatewayError:
        caps = self.bot.capabilities
        accepted = [
            kind
            for kind, ok in (
                ("images (png, jpeg, gif, webp)", caps.images_in),
                ("documents (pdf, csv, doc, docx, xls, xlsx, html, txt, md)", caps.documents),
                ("text files", self.bot.modality == "text"),
            )
            if ok
        ]
        takes = f"it takes {' and '.join(accepted)}" if accepted else "it takes no attachments"
        return unsupported(f"This bot cannot read {what} ('{name}'): {takes}.")

    async def blocks(self, attachment: Attachment) -> list[dict[str, Any]]:
        name = attachment.name or "attachment"
        caps = self.bot.capabilities
        content_type = declared_type(attachment)
        data: bytes | None = None
        if content_type in GENERIC_TYPES:  # only the bytes can tell
            data, fetched = await self.fetcher.fetch(attachment.url, name)
            content_type = (
                f"image/{sniff_image(data)}" if sniff_image(data) else fetched if fetched not in GENERIC_TYPES else ""
            )
        if content_type in IMAGE_FORMATS or content_type.startswith("image/"):
            if content_type not in IMAGE_FORMATS:
                raise unsupported(f"The image '{name}' is {content_type}; send png, jpeg, gif or webp.")
            if not caps.images_in or self.bot.modality != "text":
                raise self._no_capability("images", name)
            self.images += 1
            if self.images > MAX_IMAGES:
                raise unsupported(f"At most {MAX_IMAGES} images per message.")
            if data is None:
                data, _ = await self.fetcher.fetch(attachment.url, name)
            image_format = sniff_image(data)
            if image_format is None:
                raise unsupported(f"The image '{name}' is not a png, jpeg, gif or webp image.")
            return [{"image": {"format": image_format, "source": {"bytes": data}}}]
        if self.bot.modality != "text":
            raise self._no_capability("attachments", name)
        if attachment.parsed_content is not None and (is_text(content_type) or not caps.documents):
            return [inline_text(name, attachment.parsed_content)]
        document_format = DOCUMENT_FORMATS.get(content_type)
        if document_format is not None and caps.documents:
            if len(self.documents) >= MAX_DOCUMENTS:
                raise unsupported(f"At most {MAX_DOCUMENTS} documents per message.")
            if data is None:
                data, _ = await self.fetcher.fetch(attachment.url, name)
            document = {
                "format": document_format,
                "name": document_name(name, self.documents),
                "source": {"bytes": data},
            }
            return [{"document": document}]
        if is_text(content_type):
            if data is None:
                data, _ = await self.fetcher.fetch(attachment.url, name)
            return [inline_text(name, data.decode("utf-8", errors="replace"))]
        if document_format is not None:
            raise self._no_capability(f"{document_format} documents", name)
        raise unsupported(f"Attachments of type '{content_type or 'unknown'}' ('{name}') are not supported.")


def history_blocks(attachments: Sequence[Attachment]) -> list[dict[str, Any]]:
    """Earlier messages' files (their URLs may have expired): the parsed text, or a note naming the file."""
    return [
        inline_text(a.name or "attachment", a.parsed_content)
        if a.parsed_content is not None
        else {"text": f"[attachment '{a.name or 'attachment'}' ({a.content_type or 'file'}) not shown]"}
        for a in attachments
    ]


async def read_attachments(bot: BotConfig, chat: ChatRequest, fetcher: Fetcher) -> ChatRequest:
    """``chat`` with every message's attachments turned into ``blocks`` (see the module docstring)."""
    indexes = [i for i, m in enumerate(chat.messages) if m.attachments]
    if not indexes:
        return chat
    users = [i for i, m in enumerate(chat.messages) if m.role == "user"]
    last_user = users[-1] if users else -1
    reader = AttachmentReader(bot, fetcher)
    messages: list[ChatMessage] = list(chat.messages)
    for index in indexes:
        message = messages[index]
        if index == last_user:
            blocks = [block for a in message.attachments for block in await reader.blocks(a)]
        else:
            blocks = history_blocks(message.attachments)
        messages[index] = replace(message, blocks=(*message.blocks, *blocks))
    return replace(chat, messages=tuple(messages))


def reject_attachments(bot: BotConfig, chat: ChatRequest) -> None:
    """Media bots read no files: a clear error if the last user message brings any."""
    users = [m for m in chat.messages if m.role == "user"]
    if users and users[-1].attachments:
        name = users[-1].attachments[0].name or "attachment"
        raise unsupported(f"This bot cannot read attachments ('{name}'): it takes a text prompt only.")
