"""One function, one environment: the local runtime runs each handler with its own function's variables only."""

from __future__ import annotations

import json
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from local.process import PerThreadEnviron
from local.runner import InProcessLambdas, LocalFunction, function_environment

# Both handlers wait here until the other one is inside its invocation too, so the two environments are in use at the
# same time (moto runs Map iterations in threads of their own).
_both_running = threading.Barrier(2, timeout=60)  # broken (an error, not a hang) if they never overlap


def read_variables(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """A handler that reports the variables it is asked about, while another handler runs."""
    _both_running.wait()
    return {name: os.environ.get(name) for name in event["names"]}


def require_variable(event: dict[str, Any], context: Any) -> str:
    """A handler that reads a variable it cannot do without, as ``os.environ["DATA_BUCKET"]`` in Settings does."""
    return os.environ[event["name"]]


HERE = __name__
SUBMIT = LocalFunction("Submit", "Submit", f"{HERE}.read_variables", {"DATA_BUCKET": "data", "JOB_TAGS": "{}"}, 256)
FINALIZE = LocalFunction("Finalize", "Finalize", f"{HERE}.read_variables", {"DATA_BUCKET": "data", "PRICES": "{}"})


def _invoke(lambdas: InProcessLambdas, name: str, event: dict[str, Any]) -> tuple[Any, dict[str, str]]:
    headers: dict[str, str] = {}
    return json.loads(lambdas.invoke(name, json.dumps(event), headers)), headers


def test_concurrent_handlers_each_see_only_their_own_functions_variables() -> None:
    # GIVEN two functions whose definitions differ (JOB_TAGS on Submit only, PRICES on Finalize only), and a process
    # environment that holds a stale PRICES (e.g. from a shell) besides the runtime's own settings
    process = {"PATH": "/usr/bin", "AWS_REGION": "us-east-1", "PRICES": "stale", "POWERTOOLS_LOG_LEVEL": "WARNING"}
    environ = PerThreadEnviron(process)
    lambdas = InProcessLambdas([SUBMIT, FINALIZE], environ)
    names = ["DATA_BUCKET", "JOB_TAGS", "PRICES", "AWS_REGION", "AWS_LAMBDA_FUNCTION_NAME", "PATH"]
    # WHEN both handlers run at the same time, each in its own thread, with os.environ replaced
    with environ.installed(), ThreadPoolExecutor(max_workers=2) as pool:
        submit = pool.submit(_invoke, lambdas, "Submit", {"names": names})
        finalize = pool.submit(_invoke, lambdas, "Finalize", {"names": names})
        (submit_seen, _), (finalize_seen, _) = submit.result(), finalize.result()
        outside = {name: os.environ.get(name) for name in names}
    # THEN each saw its own variables, none of the other function's, and what Lambda sets for it
    assert submit_seen == {
        "DATA_BUCKET": "data",
        "JOB_TAGS": "{}",
        "PRICES": None,  # only Finalize defines it: the process's stale value does not leak in either
        "AWS_REGION": "us-east-1",
        "AWS_LAMBDA_FUNCTION_NAME": "Submit",
        "PATH": "/usr/bin",
    }
    assert finalize_seen["JOB_TAGS"] is None and finalize_seen["PRICES"] == "{}"
    assert finalize_seen["AWS_LAMBDA_FUNCTION_NAME"] == "Finalize"
    # AND a thread outside any handler (the test, moto, the emulator) sees the process environment
    assert outside == {name: process.get(name) for name in names}
    # AND os.environ is the real one again
    assert isinstance(os.environ, os._Environ)


def test_reading_a_variable_only_another_function_defines_is_a_function_error() -> None:
    # GIVEN Poll, which defines no JOB_TAGS, while Submit does
    poll = LocalFunction("Poll", "Poll", f"{HERE}.require_variable", {"DATA_BUCKET": "data"})
    environ = PerThreadEnviron({"AWS_REGION": "us-east-1"})
    lambdas = InProcessLambdas([SUBMIT, poll], environ)
    # WHEN Poll's handler reads JOB_TAGS, then DATA_BUCKET
    with environ.installed():
        missing, missing_headers = _invoke(lambdas, "Poll", {"name": "JOB_TAGS"})
        present, present_headers = _invoke(lambdas, "Poll", {"name": "DATA_BUCKET"})
    # THEN the first invocation fails as it would on AWS (KeyError, an unhandled function error); the second does not
    assert missing_headers == {"x-amz-function-error": "Unhandled"}
    assert missing["errorType"] == "KeyError" and "JOB_TAGS" in missing["errorMessage"]
    assert present == "data" and present_headers == {}


def read_with_default(event: dict[str, Any], context: Any) -> str:
    """A handler that reads a variable with a default, as ``os.environ.get("PRICES", "")`` would."""
    return os.environ.get(event["name"], "default")


def test_a_read_with_a_default_of_another_functions_variable_is_recorded_with_its_reader() -> None:
    # GIVEN Poll, which defines no PRICES, while Finalize does
    poll = LocalFunction("Poll", "Poll", f"{HERE}.read_with_default", {"DATA_BUCKET": "data"})
    environ = PerThreadEnviron({})
    lambdas = InProcessLambdas([poll, FINALIZE], environ)
    # WHEN Poll's handler reads PRICES with a default, and a variable no function defines
    with environ.installed():
        prices, _ = _invoke(lambdas, "Poll", {"name": "PRICES"})
        other, _ = _invoke(lambdas, "Poll", {"name": "NOBODY_DEFINES_THIS"})
    # THEN it gets the default (as on AWS), and the foreign read is recorded with the module that made it
    assert prices == other == "default"
    assert lambdas.foreign_reads == {("Poll", "PRICES", HERE)}


def test_function_environment_is_its_definition_plus_lambdas_own_variables() -> None:
    # GIVEN Submit's definition (256 MB) and a process environment with the runtime's quiet log level
    process = {"HOME": "/home/me", "POWERTOOLS_LOG_LEVEL": "WARNING", "JOB_TAGS": "from the shell"}
    submit = LocalFunction(
        "Submit",
        "Submit",
        "lambdas.submit_job.handler.lambda_handler",
        {**SUBMIT.environment, "POWERTOOLS_LOG_LEVEL": "INFO"},
        256,
    )
    # WHEN computing what its handler sees
    env = function_environment(submit, [submit, FINALIZE], process)
    # THEN: its own variables win over the process's, Lambda's variables describe it, the local log level stays
    assert env["JOB_TAGS"] == "{}" and "PRICES" not in env and env["HOME"] == "/home/me"
    assert env["_HANDLER"] == "lambdas.submit_job.handler.lambda_handler"
    assert env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "256" and env["AWS_LAMBDA_FUNCTION_VERSION"] == "$LATEST"
    assert env["POWERTOOLS_LOG_LEVEL"] == "WARNING"
