"""Team keys of the gateway (``docs/gateway-keys.md``): the key table and the admin key, and what the app may do
with them.

The table (``pk``/``sk`` strings, on demand, point-in-time recovery, TTL on ``expires``) holds each key's record
(the SHA-256 of its secret, never the secret), its monthly usage and its one-minute rate windows
(``lambdas/gateway/key_store.py``). The admin key is a secret Secrets Manager generates; the admin API compares
``Authorization: Bearer`` with it.
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from stacks.config import GatewayKeysConfig
from stacks.constructs.encryption_key import grant_key_through
from stacks.constructs.nag import acknowledge

# The calls of lambdas/gateway/key_store.py: read a record or a month's spend, create/replace a record, count a
# request or an answer (UpdateItem ADD), revoke (DeleteItem), list (Scan). No Query, no batch or transaction calls.
TABLE_ACTIONS = (
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:Scan",
)
# A table under a customer managed key: the caller's use of the key goes through DynamoDB (kms:ViaService).
TABLE_KEY_ACTIONS = ["kms:Decrypt", "kms:DescribeKey"]
ADMIN_KEY_ACTIONS = ("secretsmanager:GetSecretValue",)
TTL_ATTRIBUTE = "expires"  # lambdas/gateway/key_store.py MINUTE_TTL_SECONDS: minute windows go after an hour


class GatewayKeys(Construct):
    """``table`` (the key table) and ``admin_key`` (the admin key's secret); ``environment`` tells the app where they
    are, ``grant(role)`` lets the app's role use them. ``encryption_key`` encrypts both (None: AWS owned keys)."""

    def __init__(
        self, scope: Construct, id_: str, *, cfg: GatewayKeysConfig, encryption_key: kms.IKey | None = None
    ) -> None:
        super().__init__(scope, id_)
        self.encryption_key = encryption_key
        self.table = dynamodb.Table(
            self,
            "Table",
            partition_key=dynamodb.Attribute(name="pk", type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name="sk", type=dynamodb.AttributeType.STRING),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            encryption=dynamodb.TableEncryption.CUSTOMER_MANAGED
            if encryption_key is not None
            else dynamodb.TableEncryption.DEFAULT,
            encryption_key=encryption_key,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            deletion_protection=cfg.deletion_protection,
            time_to_live_attribute=TTL_ATTRIBUTE,
            removal_policy=cdk.RemovalPolicy.RETAIN,  # the keys and their spend outlive a stack that is deleted
        )
        self.admin_key = secretsmanager.Secret(
            self,
            "AdminKey",
            encryption_key=encryption_key,
            description="The gateway's admin key (Authorization: Bearer <key> on /admin/): manages the team keys",
            generate_secret_string=secretsmanager.SecretStringGenerator(exclude_punctuation=True, password_length=48),
        )
        acknowledge(
            self.admin_key,
            "AwsSolutions-SMG4",
            "The admin key is used by people (the admin API and python -m cli keys), not by a service that could "
            "follow a rotation; an admin rotates it with put-secret-value, and new gateway processes read it.",
        )

    @property
    def environment(self) -> dict[str, str]:
        return {
            "GATEWAY_KEYS_TABLE": self.table.table_name,
            "GATEWAY_ADMIN_KEY_SECRET_ARN": self.admin_key.secret_arn,
        }

    def grant(self, role: iam.IRole) -> None:
        """The table's item actions the app calls, on this table only; the admin key's value; the encryption key
        through DynamoDB and Secrets Manager only."""
        role.add_to_principal_policy(iam.PolicyStatement(actions=list(TABLE_ACTIONS), resources=[self.table.table_arn]))
        role.add_to_principal_policy(
            iam.PolicyStatement(actions=list(ADMIN_KEY_ACTIONS), resources=[self.admin_key.secret_arn])
        )
        if self.encryption_key is not None:
            grant_key_through(self.encryption_key, role, "dynamodb", TABLE_KEY_ACTIONS)
