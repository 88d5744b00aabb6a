"""More prompt templates from a JSON file named by PROMPT_TEMPLATES_FILE (BatchWorkflow(prompt_templates_file=...))."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from prompt_templates import TEMPLATES_FILE_ENV, TemplateError, get_template, load_templates_file, templates

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "extend_app" / "prompt_templates.json"


def _write(tmp_path: Path, document: object) -> Path:
    path = tmp_path / "templates.json"
    path.write_text(json.dumps(document))
    return path


def test_templates_of_the_file_are_found_when_the_variable_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN the example's templates file named by the environment variable (as on Lambda)
    monkeypatch.setenv(TEMPLATES_FILE_ENV, str(EXAMPLE))
    # WHEN looking its template up
    template = get_template("support_ticket_triage")
    # THEN it renders from its columns, and the built-in templates are still there
    assert template.columns == ("product", "ticket_text")
    assert '{"category": "bug"' in template.render({"product": "Widget", "ticket_text": "It crashes"})
    assert "joke_about_topic" in templates()


def test_without_the_variable_only_builtin_templates_exist(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(TEMPLATES_FILE_ENV, raising=False)
    with pytest.raises(TemplateError, match="prompt_templates_file"):
        get_template("support_ticket_triage")


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"joke_about_topic": "Again {topic}"}, "already defined"),
        ({"no placeholder": "Hello"}, "must be 1-64"),
        ({"static": "Hello"}, "at least one"),
        ({"numeric": 3}, "must be a string"),
        ([], "non-empty JSON object"),
    ],
)
def test_a_bad_file_is_rejected_with_the_id(tmp_path: Path, document: object, message: str) -> None:
    # GIVEN a templates file that cannot work / WHEN loading it / THEN the error names the file and the problem
    with pytest.raises(TemplateError, match=message):
        load_templates_file(_write(tmp_path, document))


def test_a_file_that_is_not_json_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "templates.json"
    path.write_text("{not json")
    with pytest.raises(TemplateError, match="cannot be read as JSON"):
        load_templates_file(path)
