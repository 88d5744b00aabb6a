"""Claude's ``anthropic_beta`` in a Converse request's ``additionalModelRequestFields``, as strict as Bedrock
(docs/bedrock-facts.md, "Runtime: Converse and ConverseStream", the ``anthropic_beta`` rows).

- ``anthropic_beta`` is a list of strings, each a beta Bedrock's "Anthropic Claude Messages API" page (Request and
  Response) lists for the model (``BETAS``, by foundation-model id prefix, longest prefix wins); any other value, or
  any value on a model the page lists nothing for, is Bedrock's ``ValidationException`` "invalid beta flag";
- ``anthropic_beta`` on a model that is not Claude is refused the same way (the field is Claude's own);
- the request fields a beta opens (``context_management``, ``output_config.effort``) are refused without their beta,
  as Anthropic's API refuses a field it does not know ("Extra inputs are not permitted").

This table is the emulator's own copy of the page (the contract), kept apart from the gateway's
(``lambdas.shared.model_families.CLAUDE_BETAS``) so that a gateway forwarding a beta Bedrock does not take fails its
tests here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from local.emulator.errors import validation_error
from local.emulator.families import base_model_id

INVALID_BETA = "invalid beta flag"
_CLAUDE_4 = frozenset({"token-efficient-tools-2025-02-19", "interleaved-thinking-2025-05-14"})
BETAS: dict[str, frozenset[str]] = {
    "anthropic.claude-3-5-sonnet-20241022": frozenset({"computer-use-2024-10-22"}),
    "anthropic.claude-3-7-sonnet": frozenset(
        {"computer-use-2025-01-24", "token-efficient-tools-2025-02-19", "output-128k-2025-02-19"}
    ),
    "anthropic.claude-sonnet-4-": _CLAUDE_4 | {"context-1m-2025-08-07"},
    "anthropic.claude-sonnet-4-5": _CLAUDE_4 | {"context-1m-2025-08-07", "context-management-2025-06-27"},
    "anthropic.claude-haiku-4-5": _CLAUDE_4 | {"context-management-2025-06-27"},
    "anthropic.claude-opus-4-": _CLAUDE_4,
    "anthropic.claude-opus-4-5": _CLAUDE_4 | {"effort-2025-11-24"},
}
# request fields (in additionalModelRequestFields) that exist only with their beta
FIELD_BETAS = {"context_management": "context-management-2025-06-27", "output_config": "effort-2025-11-24"}


def betas_of(model_id: str) -> frozenset[str]:
    base = base_model_id(model_id)
    found = [prefix for prefix in BETAS if base.startswith(prefix)]
    return BETAS[max(found, key=len)] if found else frozenset()


def check_anthropic_beta(request: Mapping[str, Any], model_id: str, family: str) -> None:
    """ValidationException for an ``anthropic_beta`` the model does not take, or a beta's field without its beta."""
    fields = request.get("additionalModelRequestFields")
    if not isinstance(fields, Mapping):
        return
    given = fields.get("anthropic_beta")
    if given is not None:
        if family != "anthropic" or not isinstance(given, list) or not all(isinstance(b, str) for b in given):
            raise validation_error(INVALID_BETA)
        if not set(given) <= betas_of(model_id):
            raise validation_error(INVALID_BETA)
    if family != "anthropic":
        return
    for name, beta in FIELD_BETAS.items():
        if name in fields and beta not in (given or []):
            raise validation_error(f"The model returned the following errors: {name}: Extra inputs are not permitted")
