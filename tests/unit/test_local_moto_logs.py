"""The local runtime keeps moto's log of a JSON path found absent (an IsPresent choice it handles itself) off the
user's console, and lets every other record of moto's state interpreter through."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from local.runner import MOTO_STATE_LOGGER, AbsentPathNoise, quiet_absent_path_noise

ABSENT = (
    "Exception=NoSuchJsonPathError, Details=None-Available at '(StringJsonPath| {'literal_value': '$.job.on_demand', "
    "'json_path': '$.job.on_demand'}'"
)


@pytest.fixture
def state_logger() -> Iterator[logging.Logger]:
    state_logger = logging.getLogger(MOTO_STATE_LOGGER)
    before = list(state_logger.filters)
    yield state_logger
    state_logger.filters[:] = before


def test_the_absent_path_record_is_dropped_and_other_errors_pass(
    state_logger: logging.Logger, caplog: pytest.LogCaptureFixture
):
    # GIVEN the filter installed twice (two runtimes started in one process)
    quiet_absent_path_noise()
    quiet_absent_path_noise()
    # WHEN moto's state interpreter logs the handled absent path, as it does for the "on demand?" choice, and a
    # genuine error
    with caplog.at_level(logging.ERROR, logger=MOTO_STATE_LOGGER):
        state_logger.error("%s at '%s'", "Exception=NoSuchJsonPathError, Details=None-Available", "(StringJsonPath|")
        state_logger.error("%s at '%s'", "Exception=FailureEventException, Error=States.TaskFailed", "(StateTask|")
    # THEN only the genuine error reaches the handlers, and the filter is installed once
    assert [record.getMessage() for record in caplog.records] == [
        "Exception=FailureEventException, Error=States.TaskFailed at '(StateTask|'"
    ]
    assert sum(isinstance(existing, AbsentPathNoise) for existing in state_logger.filters) == 1


def test_the_filter_reads_the_record_moto_writes():
    # GIVEN the line moto printed on the console of a local run (its format: eval_component._log_exception)
    record = logging.LogRecord(MOTO_STATE_LOGGER, logging.ERROR, __file__, 1, ABSENT, None, None)
    # WHEN the filter reads it, and a record of another exception
    other = logging.LogRecord(
        MOTO_STATE_LOGGER, logging.ERROR, __file__, 1, "Exception=KeyError, Details=['x']", None, None
    )
    # THEN the first is dropped, the other kept
    assert AbsentPathNoise().filter(record) is False
    assert AbsentPathNoise().filter(other) is True
