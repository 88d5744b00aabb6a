"""Prompt templates for batch runs: ``prompt_id_to_template`` and a safe renderer.

A template is plain text with ``{column}`` placeholders, where ``column`` is an input column name made of letters,
digits and underscores. Everything else is literal, so JSON examples such as ``{"label": "positive"}`` inside a
template need no escaping. ``{{`` and ``}}`` still give a literal single brace, so templates written for
``str.format`` (the public aws-samples orchestrator uses those) keep working unchanged. Values are inserted once and
never re-scanned, so a value containing braces is inserted as it is.

No AWS imports here: this module is staged into the Lambda assets and used by the CLI and tests.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
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


def get_template(prompt_id: str) -> PromptTemplate:
    """Look a template up by id; an unknown id is an error that lists the known ones."""
    try:
        text = prompt_id_to_template[prompt_id]
    except KeyError:
        close = difflib.get_close_matches(prompt_id, list(prompt_id_to_template), n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise TemplateError(
            f"prompt_id '{prompt_id}' is unknown.{hint} Known ids: {sorted(prompt_id_to_template)}; "
            "add new templates to prompt_id_to_template in prompt_templates.py and redeploy"
        ) from None
    return PromptTemplate.parse(text, prompt_id=prompt_id)
