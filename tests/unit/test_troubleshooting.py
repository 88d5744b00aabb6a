"""docs/troubleshooting.md lists every message a user can get: each check of the run input, each row error code, each
error code of the gateway and each one-line message of the CLI. Read from the source, so a new message without its
row in the page fails here."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from cli import aws_errors
from cli.batch import LOCAL_CANCEL, report_cancel
from local.executions import CancelOutcome

ROOT = Path(__file__).resolve().parents[2]
PAGE = (ROOT / "docs" / "troubleshooting.md").read_text(encoding="utf-8")
INPUT_ERRORS = {"InputValidationError", "ModelFamilyError", "InvalidParameterError", "UnknownModelError"}
ROW_CODE = re.compile(r"^((JOB|SUBMIT|NOT|MISSING|UNPARSABLE|RECORD|ORCHESTRATION)_[A-Z_]+|batch_cancelled)$")


def calls(path: Path, names: set[str]) -> list[ast.Call]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in names and node.args
    ]


def clauses(message: ast.expr) -> list[str]:
    """The fixed words of a message: its literal parts, cut at the first ';' (the fix follows) and stripped."""
    parts = [message.value] if isinstance(message, ast.Constant) else []
    if isinstance(message, ast.JoinedStr):
        parts = [v.value for v in message.values if isinstance(v, ast.Constant)]
    words = [part.split(";")[0].strip(" '\"(),:") for part in parts if isinstance(part, str)]
    return [w for w in words if len(w) >= 10]


def input_messages() -> list[tuple[str, list[str]]]:
    found = []
    for path in sorted((ROOT / "lambdas").rglob("*.py")):
        for call in calls(path, INPUT_ERRORS):
            words = clauses(call.args[0])
            if words:  # messages built elsewhere (pydantic's field errors, a parameter's describe()) have none here
                found.append((f"{path.relative_to(ROOT)}:{call.lineno}", words))
    return found


@pytest.mark.parametrize(("where", "words"), input_messages())
def test_every_input_check_has_its_row(where: str, words: list[str]) -> None:
    # GIVEN a message the run's input checks raise (found in the source)
    # WHEN the page is searched for its fixed words THEN at least one of them is there
    assert any(w in PAGE for w in words), f"{where}: none of {words} is in docs/troubleshooting.md"


def test_the_input_checks_were_found() -> None:
    # GIVEN the source WHEN its input checks are collected THEN there are many (the search itself works)
    assert len(input_messages()) >= 30


def test_every_row_error_code_has_its_row() -> None:
    # GIVEN the error codes the batch handlers write into output rows
    codes = set()
    logic = (ROOT / "lambdas" / name / "logic.py" for name in ("postprocess", "resubmit", "finalize", "on_demand"))
    for path in [*logic, ROOT / "lambdas" / "shared" / "cancel.py"]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and ROW_CODE.match(node.value):
                codes.add(node.value)
    # WHEN the page is searched THEN each is in it, as code
    assert {"JOB_FAILED", "UNPARSABLE_OUTPUT", "MISSING_OUTPUT", "batch_cancelled"} <= codes
    assert sorted(code for code in codes if f"`{code}`" not in PAGE) == []


def test_every_gateway_error_code_has_its_row() -> None:
    # GIVEN every error code the gateway's own checks answer with (code="..." in its source)
    codes = set()
    for path in (ROOT / "lambdas" / "gateway").rglob("*.py"):
        codes |= set(re.findall(r'code(?:: str)? ?= ?"([a-z_]+)"', path.read_text(encoding="utf-8")))
    # WHEN the page is searched THEN each is in it, as code
    assert len(codes) >= 20
    assert sorted(code for code in codes if f"`{code}`" not in PAGE) == []


@pytest.mark.parametrize(
    "line",
    [
        aws_errors.NO_CREDENTIALS,
        aws_errors.NO_REGION,
        aws_errors.EXPIRED_CREDENTIALS,
        aws_errors.model_access_fix("m", "r"),
    ],
)
def test_every_setup_line_of_the_cli_has_its_row(line: str) -> None:
    # GIVEN a one-line message of the CLI WHEN the page is searched for its start (before the details)
    start = re.split(r"[:(]| m ", line)[0].strip()
    # THEN it is there
    assert start in PAGE.replace("<id>", "m"), start


@pytest.mark.parametrize("state", ["unknown", "finished", "not_running"])
def test_every_refusal_of_batch_cancel_has_its_row(state: str, capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN the line `python -m cli batch cancel` prints for a run it does not cancel
    report_cancel(CancelOutcome(state, "<id>", "runs/<id>/cancel.json"), "<bucket>")  # type: ignore[arg-type]
    line = capsys.readouterr().err.removeprefix("error: ")
    # WHEN the page is searched for its start (before the details) THEN it is there
    start = re.split(r"[:(]", line)[0].strip()
    assert start in PAGE, start


def test_the_local_cancel_line_has_its_row() -> None:
    # GIVEN / WHEN the line of a cancel without --target aws THEN its start is in the page
    assert LOCAL_CANCEL.split(" (")[0] in PAGE
