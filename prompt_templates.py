"""Prompt templates for batch runs: ``prompt_id_to_template`` and a safe renderer.

A template is plain text with ``{column}`` placeholders, where ``column`` is an input column name made of letters,
digits and underscores. Everything else is literal, so JSON examples such as ``{"label": "positive"}`` inside a
template need no escaping. ``{{`` and ``}}`` still give a literal single brace, so templates written for
``str.format`` (the public aws-samples orchestrator uses those) keep working unchanged. Values are inserted once and
never re-scanned, so a value containing braces is inserted as it is.

More templates can come from a JSON file ``{"<prompt_id>": "<template>"}`` named by the ``PROMPT_TEMPLATES_FILE``
environment variable: ``BatchWorkflow(prompt_templates_file=...)`` validates such a file at synth, stages it into the
Lambda image and sets the variable, so apps that reuse the constructs add templates without editing this file.

No AWS imports here: this module is staged into the Lambda assets and used by the CLI and tests.
"""

from __future__ import annotations

import difflib
import functools
import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

prompt_id_to_template: dict[str, str] = {
    # The ids of the public aws-samples bedrock-batch-orchestrator, so its users can switch unchanged.
    "joke_about_topic": "Tell me a joke about {topic} in less than 50 words.",
    "sentiment_classifier": (
        "Classify the sentiment of the following text as positive, negative or neutral. "
        'Answer with JSON only, like {"sentiment": "positive"}.\n\nText: {input_text}'
    ),
    "question_answering": (
        "Answer the following question. Think step by step, then give the final answer on the last line.\n\n"
        "Question: {source}"
    ),
    "summarize_text": "Summarize the following text in at most three sentences.\n\n{input_text}",
}

# One token: an escaped brace pair, or a placeholder naming a column. Anything else is literal text.
_TOKEN = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)\}")


class TemplateError(ValueError):
    """A prompt template or the data it is applied to cannot work together."""


@dataclass(frozen=True)
class PromptTemplate:
    """A parsed template: literal parts interleaved with column references."""

    prompt_id: str
    text: str
    literals: tuple[str, ...]  # len(fields) + 1 literal parts
    fields: tuple[str, ...]  # column referenced between literals[i] and literals[i + 1]

    @classmethod
    def parse(cls, text: str, prompt_id: str = "<inline>") -> PromptTemplate:
        literals: list[str] = []
        fields: list[str] = []
        current: list[str] = []
        pos = 0
        for match in _TOKEN.finditer(text):
            current.append(text[pos : match.start()])
            token = match.group(0)
            if match.group(1) is None:  # escaped brace
                current.append(token[0])
            else:
                literals.append("".join(current))
                current = []
                fields.append(match.group(1))
            pos = match.end()
        current.append(text[pos:])
        literals.append("".join(current))
        return cls(prompt_id=prompt_id, text=text, literals=tuple(literals), fields=tuple(fields))

    @property
    def columns(self) -> tuple[str, ...]:
        """The distinct columns the template needs, in first-use order."""
        return tuple(dict.fromkeys(self.fields))

    def check_columns(self, columns: Iterable[str]) -> None:
        """Raise a TemplateError naming every placeholder that has no input column, with close matches."""
        available = list(columns)
        missing = [name for name in self.columns if name not in available]
        if not missing:
            return
        hints = []
        for name in missing:
            close = difflib.get_close_matches(name, available, n=1)
            hints.append(f"'{name}'" + (f" (did you mean '{close[0]}'?)" if close else ""))
        raise TemplateError(
            f"prompt_id '{self.prompt_id}' needs column(s) {', '.join(hints)} but the input has "
            f"{sorted(available)}; rename the input column(s) or choose another prompt_id"
        )

    def render(self, row: Mapping[str, Any]) -> str:
        """Render one row. Values are converted with ``str``; ``None`` is an error (caught earlier for batches)."""
        parts = [self.literals[0]]
        for name, literal in zip(self.fields, self.literals[1:], strict=True):
            value = row[name]
            if value is None:
                raise TemplateError(f"column '{name}' is null; fill or drop rows with a null '{name}'")
            parts.append(value if isinstance(value, str) else str(value))
            parts.append(literal)
        return "".join(parts)

    def render_columns(self, columns: Mapping[str, list[Any]], num_rows: int) -> list[str]:
        """Render many rows at once from column lists (the batch path: no per-row dicts)."""
        if not self.fields:
            return [self.literals[0]] * num_rows
        values = [columns[name] for name in self.fields]
        literals = self.literals
        out: list[str] = []
        append = out.append
        for row_values in zip(*values, strict=True):
            parts = [literals[0]]
            for value, literal in zip(row_values, literals[1:], strict=True):
                parts.append(value if isinstance(value, str) else str(value))
                parts.append(literal)
            append("".join(parts))
        return out


TEMPLATES_FILE_ENV = "PROMPT_TEMPLATES_FILE"  # a JSON file of more templates (see the module docstring)
_PROMPT_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


@functools.cache
def load_templates_file(path: Path) -> dict[str, str]:
    """The templates of a JSON file ``{"<prompt_id>": "<template>"}``, validated; raises TemplateError naming the file.

    Ids are 1-64 letters, digits, ``_``, ``.`` or ``-``, may not redefine an id of ``prompt_id_to_template``, and every
    template must parse and name at least one column.
    """
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise TemplateError(f"prompt templates file {str(path)!r} cannot be read as JSON: {exc}") from None
    if not isinstance(document, dict) or not document:
        raise TemplateError(
            f'prompt templates file {str(path)!r} must be a non-empty JSON object {{"<prompt_id>": "<template>"}}'
        )
    for prompt_id, text in document.items():
        if not _PROMPT_ID.match(prompt_id):
            raise TemplateError(
                f"prompt templates file {str(path)!r}: id {prompt_id!r} must be 1-64 letters, digits, '_', '.' or '-'"
            )
        if prompt_id in prompt_id_to_template:
            raise TemplateError(
                f"prompt templates file {str(path)!r}: id {prompt_id!r} is already defined in prompt_templates.py; "
                "choose another id"
            )
        if not isinstance(text, str) or not PromptTemplate.parse(text, prompt_id).fields:
            raise TemplateError(
                f"prompt templates file {str(path)!r}: template {prompt_id!r} must be a string with at least one "
                "{column} placeholder"
            )
    return dict(document)


def templates() -> dict[str, str]:
    """``prompt_id_to_template`` plus the templates of ``$PROMPT_TEMPLATES_FILE`` when it is set."""
    extra = os.environ.get(TEMPLATES_FILE_ENV, "").strip()
    if not extra:
        return prompt_id_to_template
    return {**prompt_id_to_template, **load_templates_file(Path(extra))}


def get_template(prompt_id: str) -> PromptTemplate:
    """Look a template up by id; an unknown id is an error that lists the known ones."""
    known = templates()
    try:
        text = known[prompt_id]
    except KeyError:
        close = difflib.get_close_matches(prompt_id, list(known), n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise TemplateError(
            f"prompt_id '{prompt_id}' is unknown.{hint} Known ids: {sorted(known)}; "
            "add new templates to prompt_id_to_template in prompt_templates.py (or to the JSON file of "
            "BatchWorkflow(prompt_templates_file=...)) and redeploy"
        ) from None
    return PromptTemplate.parse(text, prompt_id=prompt_id)
