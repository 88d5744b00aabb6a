import pytest

from prompt_templates import PromptTemplate, TemplateError, get_template, prompt_id_to_template


def test_public_sample_ids_are_available():
    # GIVEN the ids users of the public aws-samples orchestrator already use
    # WHEN they are looked up THEN each exists with the column it was written for
    assert get_template("joke_about_topic").columns == ("topic",)
    assert get_template("sentiment_classifier").columns == ("input_text",)
    assert get_template("question_answering").columns == ("source",)


def test_render_inserts_values_once_and_keeps_literal_braces():
    # GIVEN a template with a JSON example, an escaped brace and a placeholder
    template = PromptTemplate.parse('Say {"a": 1} and {{x}} about {topic}')
    # WHEN a value that itself contains braces is rendered
    text = template.render({"topic": "{topic} {0}"})
    # THEN the JSON and the value stay literal and the escape gives single braces
    assert text == 'Say {"a": 1} and {x} about {topic} {0}'


def test_render_columns_matches_row_rendering():
    # GIVEN a template over two columns
    template = PromptTemplate.parse("{a}-{b}-{a}")
    # WHEN rendered column-wise THEN it equals row-wise rendering
    rows = [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]
    assert template.render_columns({"a": [1, 2], "b": ["x", "y"]}, 2) == [template.render(r) for r in rows]


def test_missing_column_names_the_column_and_suggests_a_match():
    # GIVEN the joke template and columns with a near miss
    # WHEN the columns are checked THEN the error names the missing key and the close match
    with pytest.raises(TemplateError, match=r"'topic' \(did you mean 'topics'\?\)"):
        get_template("joke_about_topic").check_columns(["topics", "id"])


def test_unknown_prompt_id_lists_known_ids():
    with pytest.raises(TemplateError, match="Known ids") as err:
        get_template("joke_about_topics")
    assert "did you mean 'joke_about_topic'" in str(err.value).lower()


def test_null_value_is_an_error_not_the_string_none():
    with pytest.raises(TemplateError, match="null"):
        get_template("joke_about_topic").render({"topic": None})


@pytest.mark.parametrize("prompt_id", sorted(prompt_id_to_template))
def test_every_shipped_template_parses_with_named_columns(prompt_id):
    template = get_template(prompt_id)
    assert template.columns, f"{prompt_id} references no column"
