"""The emulator's HTTP server: a client that hangs up is not an error worth a traceback."""

from __future__ import annotations

import pytest

from local.emulator.protocol import RouteTable
from local.emulator.server import _Server


@pytest.fixture
def server():
    served = _Server(("127.0.0.1", 0), RouteTable())
    yield served
    served.server_close()


@pytest.mark.parametrize("gone", [BrokenPipeError(32, "Broken pipe"), ConnectionResetError(104, "reset")])
def test_a_client_that_hung_up_prints_nothing(server, capsys, gone: OSError):
    # GIVEN the emulator's server, handling an answer whose client has gone
    try:
        raise gone
    except OSError:
        # WHEN the server handles the error
        server.handle_error(None, ("127.0.0.1", 1234))
    # THEN nothing reaches stderr (it is logged at debug level)
    assert capsys.readouterr().err == ""


def test_any_other_error_keeps_the_traceback(server, capsys):
    # GIVEN the emulator's server, handling a request that failed in the emulator itself
    try:
        raise ValueError("a bug in a route")
    except ValueError:
        # WHEN the server handles the error
        server.handle_error(None, ("127.0.0.1", 1234))
    # THEN the traceback is printed, as the standard library prints it
    err = capsys.readouterr().err
    assert "ValueError: a bug in a route" in err
    assert "Traceback" in err
