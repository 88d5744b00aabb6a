"""The gateway's team-key table on a moto DynamoDB server, for ``python -m cli gateway`` and the tests: the same
table (``pk``/``sk`` strings, on demand) as ``stacks/constructs/gateway_keys.py`` deploys, so the gateway runs the
same code locally as on AWS."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import boto3

TABLE = "gateway-keys"
FAKE_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


def create_key_table(endpoint_url: str, region: str = "us-east-1", table: str | None = None) -> str:
    """Create the table (a new name each time unless ``table`` is given: moto servers of one process share their
    state, so two local gateways in one process would otherwise meet in one table); its name."""
    table = table or f"{TABLE}-{uuid.uuid4().hex[:12]}"
    client = boto3.client("dynamodb", endpoint_url=endpoint_url, region_name=region, **FAKE_CREDENTIALS)
    client.create_table(
        TableName=table,
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
        ],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        BillingMode="PAY_PER_REQUEST",
    )
    client.update_time_to_live(TableName=table, TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires"})
    return table


@contextmanager
def moto_server(host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """A moto server (every service moto has: DynamoDB, CloudFormation, Secrets Manager...) on ``port`` (0: any
    free port); yields its endpoint URL."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address=host, port=port, verbose=False)
    server.start()
    try:
        bound_host, bound_port = server.get_host_and_port()
        yield f"http://{bound_host}:{bound_port}"
    finally:
        server.stop()
