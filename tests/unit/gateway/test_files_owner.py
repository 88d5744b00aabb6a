"""Who owns a file (``routes_files.key_owner``): a team key by its name, a Secrets Manager key by its reference."""

from __future__ import annotations

from starlette.requests import Request

from lambdas.gateway import key_guard
from lambdas.gateway.key_guard import Caller
from lambdas.gateway.routes_files import key_owner
from lambdas.gateway.team_keys import TeamKey

KEYS = {"default": "secret-default-key", "team": "secret-team-key"}


def request_with(key: str) -> Request:
    return Request({"type": "http", "headers": [(b"authorization", f"Bearer {key}".encode())]})


def test_a_secrets_manager_key_owns_by_its_reference() -> None:
    # GIVEN / WHEN requests with each key of the secret, and one with an unknown key
    # THEN each is owned by its reference, the unknown one by nobody
    assert key_owner(request_with("secret-team-key"), KEYS) == "key:team"
    assert key_owner(request_with("secret-default-key"), KEYS) == "key:default"
    assert key_owner(request_with("nope"), KEYS) is None


def test_a_team_key_owns_by_its_name_even_when_a_reference_has_that_name() -> None:
    # GIVEN a request the key guard admitted with the team key named "default"
    token = key_guard._CALLER.set(Caller(TeamKey(name="default", secret_sha256="0" * 64)))
    try:
        # WHEN its owner is asked for
        owner = key_owner(request_with("whatever"), KEYS)
    finally:
        key_guard._CALLER.reset(token)
    # THEN it is the team key's, apart from the secret's reference of the same name
    assert owner == "team:default"
