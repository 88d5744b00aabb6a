"""Team keys of the gateway (``docs/gateway/keys.md``): the key table and the admin key, and what the app may do
with them.

The table (``pk``/``sk`` strings, on demand, point-in-time recovery, TTL on ``expires``) holds each key's record
(the SHA-256 of its secret, never the secret), its monthly usage and its rate limits' token buckets
(``lambdas/gateway/key_store.py``). The admin key is a secret Secrets Manager generates; the admin API compares
``Authorization: Bearer`` with it.
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from lambdas.gateway.metrics import BUDGET_USED_PERCENT, COST, INPUT_TOKENS, OUTPUT_TOKENS, REQUESTS
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
# A table under a customer managed key: DynamoDB decrypts the table key with it for the principal that reads or
# writes the table (kms:Decrypt, through DynamoDB, with the table and account as encryption context); the rest of
# what DynamoDB does with the key runs on grants made for the principal that created the table (docs/bedrock-facts.md,
# "AWS service facts": DynamoDB).
TABLE_KEY_ACTIONS = ["kms:Decrypt"]
ADMIN_KEY_ACTIONS = ("secretsmanager:GetSecretValue",)
TTL_ATTRIBUTE = "expires"  # lambdas/gateway/key_store.py BUCKET_TTL_SECONDS: an idle key's bucket goes after an hour


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
        through DynamoDB (for this table only) and Secrets Manager only."""
        role.add_to_principal_policy(iam.PolicyStatement(actions=list(TABLE_ACTIONS), resources=[self.table.table_arn]))
        role.add_to_principal_policy(
            iam.PolicyStatement(actions=list(ADMIN_KEY_ACTIONS), resources=[self.admin_key.secret_arn])
        )
        if self.encryption_key is not None:
            grant_key_through(
                self.encryption_key,
                role,
                "dynamodb",
                TABLE_KEY_ACTIONS,
                context={
                    "aws:dynamodb:tableName": self.table.table_name,
                    "aws:dynamodb:subscriberId": cdk.Stack.of(self).account,
                },
            )


# ---------------------------------------------------------------- metrics (lambdas/gateway/key_guard.py emits them)


def per_key(namespace: str, metric: str, statistic: str = "SUM") -> str:
    """A CloudWatch Metrics Insights query: ``metric`` per team key (the keys are data, not known at synth)."""
    return f'SELECT {statistic}({metric}) FROM SCHEMA("{namespace}", key, service) GROUP BY key'


def team_key_widgets(namespace: str, period: cdk.Duration, width: int) -> list[cw.IWidget]:
    """Requests, tokens, cost and budget used per team key, one line per key."""

    def query(metric: str, statistic: str = "SUM", label: str = "") -> cw.MathExpression:
        return cw.MathExpression(expression=per_key(namespace, metric, statistic), period=period, label=label)

    return [
        cw.GraphWidget(title="Answers per team key", left=[query(REQUESTS)], width=width),
        cw.GraphWidget(title="Estimated cost per team key (USD)", left=[query(COST)], width=width),
        cw.GraphWidget(
            title="Tokens per team key (input, output)",
            left=[query(INPUT_TOKENS, label="in")],
            right=[query(OUTPUT_TOKENS, label="out")],
            width=width,
        ),
        cw.GraphWidget(
            title="Monthly budget used per team key (%)", left=[query(BUDGET_USED_PERCENT, "MAX")], width=width
        ),
    ]


def budget_alarm(scope: Construct, namespace: str, percent: int, period: cdk.Duration) -> cw.Alarm:
    """Fires when any team key has spent more than ``percent`` of its monthly budget (the highest share of all
    keys, as each answer leaves it); the log's ``key spend recorded`` lines name the key."""
    return cw.Alarm(
        scope,
        "TeamKeyBudgetAlarm",
        metric=cw.MathExpression(
            expression=f'SELECT MAX({BUDGET_USED_PERCENT}) FROM SCHEMA("{namespace}", key, service)',
            period=period,
            label="Highest share of a monthly budget spent (%)",
        ),
        threshold=percent,
        evaluation_periods=1,
        comparison_operator=cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
        treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
        alarm_description=f"A team key has spent more than {percent}% of its monthly budget "
        "(python -m cli keys usage <name>; docs/gateway/keys.md).",
    )
