"""Dashboards and alarms of both stacks, the optional alarm topic, and cdk-nag with and without it.

Two apps for the module, built as ``app.py`` builds them (both stacks): one without ``alarmEmail`` (the default) and
one with it and the thresholds passed as strings, as ``-c`` passes them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import cx_api
from aws_cdk.assertions import Template

from lambdas.shared import observability as function_observability
from stacks.batch_inference_stack import BatchInferenceStack
from stacks.constructs.observability import (
    BATCH_METRICS,
    BATCH_SERVICES,
    GATEWAY_BEDROCK_ERRORS,
    GATEWAY_ERROR_CLASSES,
    GATEWAY_GUARDRAIL_INTERVENTIONS,
    GATEWAY_INPUT_TOKENS,
    GATEWAY_OUTPUT_TOKENS,
    GATEWAY_SERVICE,
    GATEWAY_TTFT,
    JOB_STATUS_METRIC,
    JOB_STATUSES,
)
from stacks.gateway_stack import GatewayStack
from stacks.synth import build_app, gateway_stack

PROJECT_ROOT = Path(__file__).resolve().parents[2]
BOTS_FILE = "tests/infra/data/gateway_bots.json"
BOTS = ["haiku", "haiku-us", "router", "canvas", "sd", "reel"]  # the fixture's bots
EMAIL = "ops@example.com"
HANDLER_FILES = {
    "preprocess": "preprocess",
    "submit": "submit_job",
    "poll": "poll_job",
    "postprocess": "postprocess",
    "resubmit": "resubmit",
    "finalize": "finalize",
    "on_demand": "on_demand",
}


@dataclass(frozen=True)
class Synth:
    assembly: cx_api.CloudAssembly
    batch_stack: BatchInferenceStack
    gateway_stack: GatewayStack
    batch: dict[str, Any]  # resources
    gateway: dict[str, Any]

    def of_type(self, resources: dict[str, Any], type_: str) -> dict[str, dict[str, Any]]:
        return {k: v["Properties"] for k, v in resources.items() if v["Type"] == type_}

    def logical_id(self, stack: cdk.Stack, construct: Any) -> str:
        return stack.get_logical_id(construct.node.default_child)


def _synth(context: Mapping[str, object], outdir: Path) -> Synth:
    app, batch = build_app(
        {"gatewayBotsFile": BOTS_FILE, **context}, skip_bundling=True, outdir=str(outdir), gateway=True
    )
    assembly = app.synth()  # runs cdk-nag on both stacks: raises on an unacknowledged finding
    gateway = gateway_stack(app)
    return Synth(
        assembly=assembly,
        batch_stack=batch,
        gateway_stack=gateway,
        batch=Template.from_stack(batch).to_json()["Resources"],
        gateway=Template.from_stack(gateway).to_json()["Resources"],
    )


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    return _synth({}, tmp_path_factory.mktemp("observability-plain"))


@pytest.fixture(scope="module")
def mailed(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    context = {
        "alarmEmail": EMAIL,
        "alarmRecordFailurePercent": "20",
        "alarmJobFailurePercent": "30",
        "alarmGateway5xxPercent": "2",
        "alarmGateway4xxPercent": "40",
    }
    return _synth(context, tmp_path_factory.mktemp("observability-mailed"))


def dashboard(synth: Synth, resources: dict[str, Any]) -> dict[str, list[Any]]:
    """The single dashboard's widgets by title: the metric rows of each (references become "<Ref>" strings)."""
    (props,) = synth.of_type(resources, "AWS::CloudWatch::Dashboard").values()
    parts = props["DashboardBody"]["Fn::Join"][1]
    body = json.loads("".join(p if isinstance(p, str) else json.dumps(_ref(p))[1:-1] for p in parts))
    return {w["properties"]["title"]: w["properties"].get("metrics", []) for w in body["widgets"]}


def _ref(node: dict[str, Any]) -> str:
    if "Ref" in node:
        return f"<{node['Ref']}>"
    return "<{}.{}>".format(*node["Fn::GetAtt"])


def metric_names(rows: list[Any]) -> list[str]:
    """``[namespace, name, dim, value, ..., {options}]`` rows -> names (expressions as their expression); the hidden
    inputs of expressions are left out."""
    shown = [row for row in rows if row[-1].get("visible", True)]
    return [row[1] if isinstance(row[0], str) else row[-1]["expression"] for row in shown]


def alarms(synth: Synth, resources: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return synth.of_type(resources, "AWS::CloudWatch::Alarm")


def find_alarm(synth: Synth, resources: dict[str, Any], logical_prefix: str) -> dict[str, Any]:
    (alarm,) = [a for k, a in alarms(synth, resources).items() if k.startswith(logical_prefix)]
    return alarm


def test_batch_dashboard_shows_executions_jobs_records_tokens_and_functions(plain: Synth) -> None:
    # GIVEN the batch dashboard
    widgets = dashboard(plain, plain.batch)
    # THEN executions by outcome come from the state machine's AWS/States metrics
    sm_id = plain.logical_id(plain.batch_stack, plain.batch_stack.workflow.state_machine)
    executions = widgets["Executions by outcome"]
    assert metric_names(executions) == [
        "ExecutionsStarted",
        "ExecutionsSucceeded",
        "ExecutionsFailed",
        "ExecutionsTimedOut",
        "ExecutionsAborted",
    ]
    assert all(row[0] == "AWS/States" and row[2:4] == ["StateMachineArn", f"<{sm_id}>"] for row in executions)
    # AND jobs, records (with the failed ratio) and tokens are the handlers' EMF metrics
    assert metric_names(widgets["Jobs"]) == ["JobsPlanned", "JobsSubmitted", "RunsFinalized"]
    assert metric_names(widgets["Records"]) == [
        "RecordsPrepared",
        "RecordsSucceeded",
        "RecordsFailed",
        "RecordsResubmitted",
        "RecordsRecovered",
        "IF(succeeded + failed > 0, 100 * failed / (succeeded + failed), 0)",
    ]
    assert metric_names(widgets["Tokens"]) == ["InputTokens", "OutputTokens"]
    # AND jobs by status and the estimated cost have a widget each
    assert metric_names(widgets["Jobs by status"]) == [JOB_STATUS_METRIC] * len(JOB_STATUSES)
    assert metric_names(widgets["Estimated cost (USD, batch prices from prices.json)"]) == ["EstimatedCostUSD"]
    # AND every function's errors, throttles and p99 duration are graphed
    assert metric_names(widgets["Lambda errors and throttles"]) == ["Errors"] * 7 + ["Throttles"] * 7
    assert metric_names(widgets["Lambda duration p99 (ms)"]) == ["Duration"] * 7
    assert "Alarms" in widgets


def test_emf_metrics_match_what_the_functions_emit(plain: Synth) -> None:
    # GIVEN the batch dashboard's EMF rows and the functions as synthesized
    rows = [
        row
        for rows in dashboard(plain, plain.batch).values()
        for row in rows
        if row[0] == "BedrockBatch" and row[1] != JOB_STATUS_METRIC
    ]
    functions = plain.batch_stack.workflow.functions
    env = {
        key: plain.batch[plain.logical_id(plain.batch_stack, fn.function)]["Properties"]["Environment"]["Variables"]
        for key, fn in functions.items()
    }
    assert {row[1] for row in rows} == set(BATCH_METRICS)
    for row in rows:
        name, (dimension, service) = row[1], row[2:4]
        key = BATCH_METRICS[name]
        # THEN each is in the namespace and under the service dimension its function's Powertools settings give
        assert env[key]["POWERTOOLS_METRICS_NAMESPACE"] == row[0]
        assert (
            (dimension, service) == ("service", env[key]["POWERTOOLS_SERVICE_NAME"]) == ("service", BATCH_SERVICES[key])
        )
        # AND the function's handler really emits it
        handler = (PROJECT_ROOT / "lambdas" / HANDLER_FILES[key] / "handler.py").read_text()
        assert f'metrics.add_metric(name="{name}"' in handler


def test_jobs_by_status_graphs_the_status_transitions_submit_and_poll_emit(plain: Synth) -> None:
    # GIVEN the batch dashboard's "Jobs by status" widget and the functions as synthesized
    rows = dashboard(plain, plain.batch)["Jobs by status"]
    functions = plain.batch_stack.workflow.functions
    service = {
        key: plain.batch[plain.logical_id(plain.batch_stack, fn.function)]["Properties"]["Environment"]["Variables"][
            "POWERTOOLS_SERVICE_NAME"
        ]
        for key, fn in functions.items()
    }
    # THEN there is one line per Bedrock job status, Submitted counted by Submit and every later status by Poll
    assert [(row[1], row[2:6]) for row in rows] == [
        (JOB_STATUS_METRIC, ["Status", status, "service", service[key]]) for status, key in JOB_STATUSES.items()
    ]
    assert {"Submitted", "InProgress", "Completed", "Failed", "Stopped", "Expired"} <= set(JOB_STATUSES)
    # AND the name is the one the functions emit, from the handlers that emit it
    assert function_observability.JOB_STATUS_METRIC == JOB_STATUS_METRIC
    for key in set(JOB_STATUSES.values()):
        assert "record_job_status(" in (PROJECT_ROOT / "lambdas" / HANDLER_FILES[key] / "handler.py").read_text()


def test_estimated_cost_graph_is_the_finalize_metric(plain: Synth) -> None:
    # GIVEN the cost widget / THEN it sums Finalize's EstimatedCostUSD (USD at batch prices, see prices.json)
    (row,) = dashboard(plain, plain.batch)["Estimated cost (USD, batch prices from prices.json)"]
    assert row[:4] == ["BedrockBatch", "EstimatedCostUSD", "service", BATCH_SERVICES["finalize"]]
    assert row[-1]["stat"] == "Sum"


def test_on_demand_records_graph_is_the_metric_the_on_demand_runner_emits(plain: Synth) -> None:
    # GIVEN the batch dashboard and the on-demand runner as synthesized
    (row,) = dashboard(plain, plain.batch)["Records answered on demand (runtime, on-demand prices)"]
    runner = plain.batch_stack.workflow.functions["on_demand"]
    variables = plain.batch[plain.logical_id(plain.batch_stack, runner.function)]["Properties"]["Environment"][
        "Variables"
    ]
    # THEN the widget sums OnDemandRecords in the runner's namespace, under the service dimension its Powertools
    # settings give (a dimension the runner does not emit would graph nothing)
    assert row[:4] == [
        variables["POWERTOOLS_METRICS_NAMESPACE"],
        "OnDemandRecords",
        "service",
        variables["POWERTOOLS_SERVICE_NAME"],
    ]
    assert row[-1]["stat"] == "Sum"
    # AND the runner's handler emits that metric
    handler = (PROJECT_ROOT / "lambdas" / "on_demand" / "handler.py").read_text()
    assert 'metrics.add_metric(name="OnDemandRecords"' in handler


def test_batch_alarms_on_failed_and_timed_out_runs_failed_records_and_function_errors(plain: Synth) -> None:
    sm_id = plain.logical_id(plain.batch_stack, plain.batch_stack.workflow.state_machine)
    # THEN a failed and a timed-out execution each raise an alarm at the first occurrence
    for prefix, metric in (
        ("ObservabilityExecutionFailed", "ExecutionsFailed"),
        ("ObservabilityExecutionTimedOut", "ExecutionsTimedOut"),
    ):
        alarm = find_alarm(plain, plain.batch, prefix)
        assert (alarm["Namespace"], alarm["MetricName"], alarm["Statistic"]) == ("AWS/States", metric, "Sum")
        assert alarm["Dimensions"] == [{"Name": "StateMachineArn", "Value": {"Ref": sm_id}}]
        assert (alarm["Threshold"], alarm["ComparisonOperator"]) == (1, "GreaterThanOrEqualToThreshold")
        assert alarm["TreatMissingData"] == "notBreaching"
    # AND the failed-record ratio alarms above the default 10 %
    ratio = find_alarm(plain, plain.batch, "ObservabilityRecordFailureRatio")
    assert (ratio["Threshold"], ratio["ComparisonOperator"]) == (10, "GreaterThanThreshold")
    expression, *inputs = ratio["Metrics"]
    assert expression["Expression"] == "IF(succeeded + failed > 0, 100 * failed / (succeeded + failed), 0)"
    assert {m["Id"]: m["MetricStat"]["Metric"]["MetricName"] for m in inputs} == {
        "succeeded": "RecordsSucceeded",
        "failed": "RecordsFailed",
    }
    # AND the failed-job ratio alarms above the default 10 %: jobs ending Failed/Expired/Stopped among all ending
    jobs = find_alarm(plain, plain.batch, "ObservabilityJobFailureRatio")
    assert (jobs["Threshold"], jobs["ComparisonOperator"]) == (10, "GreaterThanThreshold")
    expression, *inputs = jobs["Metrics"]
    ended = "failed + expired + stopped + completed + partiallycompleted"
    assert expression["Expression"] == f"IF({ended} > 0, 100 * (failed + expired + stopped) / ({ended}), 0)"
    statuses = {m["Id"]: m["MetricStat"]["Metric"] for m in inputs}
    assert {key: metric["MetricName"] for key, metric in statuses.items()} == dict.fromkeys(
        ("failed", "expired", "stopped", "completed", "partiallycompleted"), "JobStatusChanges"
    )
    assert {d["Value"] for m in statuses.values() for d in m["Dimensions"] if d["Name"] == "Status"} == {
        "Failed", "Expired", "Stopped", "Completed", "PartiallyCompleted"
    }  # fmt: skip
    # AND each function has an errors alarm
    function_ids = {
        plain.logical_id(plain.batch_stack, fn.function) for fn in plain.batch_stack.workflow.functions.values()
    }
    errors = [a for a in alarms(plain, plain.batch).values() if a.get("MetricName") == "Errors"]
    assert {a["Dimensions"][0]["Value"]["Ref"] for a in errors} == function_ids
    assert all(a["Namespace"] == "AWS/Lambda" and a["Threshold"] == 1 for a in errors)


def test_gateway_dashboard_shows_requests_latency_errors_throttles_and_cost_per_bot(plain: Synth) -> None:
    widgets = dashboard(plain, plain.gateway)
    # THEN requests and errors by class, latency and integration latency at p50 and p99 come from API Gateway
    assert metric_names(widgets["Requests and errors"]) == ["Count", "4XXError", "5XXError"]
    latency = widgets["Latency p50/p99 (ms)"]
    assert [(row[1], row[-1]["stat"]) for row in latency] == [
        ("Latency", "p50"),
        ("Latency", "p99"),
        ("IntegrationLatency", "p50"),
        ("IntegrationLatency", "p99"),
    ]
    assert metric_names(widgets["Error rates (%)"]) == [
        "IF(requests > 0, 100 * client / requests, 0)",
        "IF(requests > 0, 100 * server / requests, 0)",
    ]
    assert metric_names(widgets["Lambda errors and throttles"]) == ["Errors", "Throttles"]
    # AND cost per bot is the gateway's CostUSD EMF metric, one line per configured bot, in the function's namespace
    fn = plain.gateway[plain.logical_id(plain.gateway_stack, plain.gateway_stack.gateway.function.function)]
    env = fn["Properties"]["Environment"]["Variables"]
    cost = widgets["Estimated cost per bot (USD)"]
    assert [row[:2] for row in cost] == [[env["POWERTOOLS_METRICS_NAMESPACE"], "CostUSD"]] * len(BOTS)
    # single_metric adds Powertools' service dimension to the bot dimension
    assert [dict(zip(row[2:-1:2], row[3:-1:2], strict=True)) for row in cost] == [
        {"bot": bot, "service": env["POWERTOOLS_SERVICE_NAME"]} for bot in BOTS
    ]
    assert env["POWERTOOLS_SERVICE_NAME"] == GATEWAY_SERVICE
    # AND tokens per bot: input and output, one line each per configured bot
    tokens = widgets["Tokens per bot (input, output)"]
    assert [(row[1], row[3]) for row in tokens] == [
        (name, bot) for bot in BOTS for name in (GATEWAY_INPUT_TOKENS, GATEWAY_OUTPUT_TOKENS)
    ]


def test_gateway_dashboard_shows_time_to_first_token_and_bedrock_errors_by_class(plain: Synth) -> None:
    widgets = dashboard(plain, plain.gateway)
    fn = plain.gateway[plain.logical_id(plain.gateway_stack, plain.gateway_stack.gateway.function.function)]
    namespace = fn["Properties"]["Environment"]["Variables"]["POWERTOOLS_METRICS_NAMESPACE"]
    # THEN time to first token is graphed at p50 and p99, one line per text bot (media bots stream no tokens)
    for stat in ("p50", "p99"):
        rows = widgets[f"Time to first token {stat} per bot (ms)"]
        assert [(row[0], row[1], row[-1]["stat"]) for row in rows] == [(namespace, "TimeToFirstToken", stat)] * 3
        assert [dict(zip(row[2:-1:2], row[3:-1:2], strict=True)) for row in rows] == [
            {"bot": bot, "service": GATEWAY_SERVICE} for bot in ("haiku", "haiku-us", "router")
        ]
    # AND Bedrock errors are graphed by class (throttling, validation, upstream, ...), summed over all bots
    rows = widgets["Bedrock errors by class"]
    assert [(row[1], row[3], row[-1]["stat"]) for row in rows] == [
        ("BedrockErrors", error_class, "Sum") for error_class in GATEWAY_ERROR_CLASSES
    ]
    # AND without a guarded bot there is no guardrail widget
    assert "Guardrail interventions per bot" not in widgets


def test_gateway_metric_names_and_error_classes_are_the_ones_the_gateway_emits() -> None:
    # GIVEN the gateway's metric names and its Bedrock error mapping
    from lambdas.gateway import metrics
    from lambdas.gateway.errors import BEDROCK_ERRORS, UNKNOWN_UPSTREAM, from_bedrock, internal_error

    # THEN the dashboard reads the names the gateway emits
    assert (
        metrics.TIME_TO_FIRST_TOKEN,
        metrics.GUARDRAIL_INTERVENTIONS,
        metrics.BEDROCK_ERRORS,
        metrics.COST,
        metrics.INPUT_TOKENS,
        metrics.OUTPUT_TOKENS,
    ) == (
        GATEWAY_TTFT,
        GATEWAY_GUARDRAIL_INTERVENTIONS,
        GATEWAY_BEDROCK_ERRORS,
        "CostUSD",
        GATEWAY_INPUT_TOKENS,
        GATEWAY_OUTPUT_TOKENS,
    )
    # AND every class an error can map to has a line (timeouts and internal errors included)
    from botocore.exceptions import ReadTimeoutError

    emitted = {kind.openai_type for kind in BEDROCK_ERRORS.values()} | {UNKNOWN_UPSTREAM.openai_type}
    emitted |= {from_bedrock(ReadTimeoutError(endpoint_url="x")).openai_type, internal_error().openai_type}
    assert emitted == set(GATEWAY_ERROR_CLASSES)


def test_gateway_alarms_on_5xx_and_4xx_rates_and_function_errors_and_throttles(plain: Synth) -> None:
    for prefix, errors, threshold in (
        ("ObservabilityGateway5xx", "5XXError", 5),
        ("ObservabilityGateway4xx", "4XXError", 25),
    ):
        alarm = find_alarm(plain, plain.gateway, prefix)
        # THEN the rate is errors per request, in percent, above the default threshold
        expression, *inputs = alarm["Metrics"]
        assert re.fullmatch(r"IF\(requests > 0, 100 \* \w+ / requests, 0\)", expression["Expression"])
        assert sorted(m["MetricStat"]["Metric"]["MetricName"] for m in inputs) == sorted([errors, "Count"])
        assert all(m["MetricStat"]["Metric"]["Namespace"] == "AWS/ApiGateway" for m in inputs)
        assert (alarm["Threshold"], alarm["ComparisonOperator"]) == (threshold, "GreaterThanThreshold")
    function_id = plain.logical_id(plain.gateway_stack, plain.gateway_stack.gateway.function.function)
    for prefix, metric in (("ObservabilityFunctionErrors", "Errors"), ("ObservabilityFunctionThrottles", "Throttles")):
        alarm = find_alarm(plain, plain.gateway, prefix)
        assert (alarm["Namespace"], alarm["MetricName"], alarm["Threshold"]) == ("AWS/Lambda", metric, 1)
        assert alarm["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": function_id}}]


def test_no_topic_without_alarm_email(plain: Synth) -> None:
    # GIVEN no alarmEmail / THEN neither stack has a topic, a subscription or a key, and no alarm has an action
    for resources in (plain.batch, plain.gateway):
        types = {r["Type"] for r in resources.values()}
        assert not types & {"AWS::SNS::Topic", "AWS::SNS::Subscription", "AWS::KMS::Key"}
        assert all("AlarmActions" not in a for a in alarms(plain, resources).values())


def test_alarm_email_adds_an_encrypted_topic_mailing_every_alarm(mailed: Synth) -> None:
    for resources in (mailed.batch, mailed.gateway):
        # GIVEN alarmEmail / THEN each stack has one topic encrypted with its own rotated key
        ((topic_id, topic),) = mailed.of_type(resources, "AWS::SNS::Topic").items()
        ((key_id, key),) = mailed.of_type(resources, "AWS::KMS::Key").items()
        assert topic["KmsMasterKeyId"] == {"Fn::GetAtt": [key_id, "Arn"]}
        assert key["EnableKeyRotation"] is True
        # AND CloudWatch may use the key (alarms publish to the encrypted topic)
        assert any(
            s["Principal"] == {"Service": "cloudwatch.amazonaws.com"} and "kms:GenerateDataKey*" in s["Action"]
            for s in key["KeyPolicy"]["Statement"]
        )
        # AND publishing without TLS is denied
        (policy,) = mailed.of_type(resources, "AWS::SNS::TopicPolicy").values()
        assert any(
            s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
            for s in policy["PolicyDocument"]["Statement"]
        )
        # AND the address is subscribed by email
        (subscription,) = mailed.of_type(resources, "AWS::SNS::Subscription").values()
        assert (subscription["Protocol"], subscription["Endpoint"]) == ("email", EMAIL)
        assert subscription["TopicArn"] == {"Ref": topic_id}
        # AND every alarm notifies the topic
        every = alarms(mailed, resources).values()
        assert every and all(a["AlarmActions"] == [{"Ref": topic_id}] for a in every)


def test_thresholds_come_from_the_context(mailed: Synth) -> None:
    # GIVEN thresholds passed as strings / THEN the alarms use them
    assert find_alarm(mailed, mailed.batch, "ObservabilityRecordFailureRatio")["Threshold"] == 20
    assert find_alarm(mailed, mailed.batch, "ObservabilityJobFailureRatio")["Threshold"] == 30
    assert find_alarm(mailed, mailed.gateway, "ObservabilityGateway5xx")["Threshold"] == 2
    assert find_alarm(mailed, mailed.gateway, "ObservabilityGateway4xx")["Threshold"] == 40


@pytest.mark.parametrize("fixture", ["plain", "mailed"])
def test_nag_passes_with_and_without_the_topic(fixture: str, request: pytest.FixtureRequest) -> None:
    # GIVEN the app synthesized with cdk-nag (the synth raises on an error) / THEN no finding is left at all
    synth: Synth = request.getfixturevalue(fixture)
    report = json.loads((Path(synth.assembly.directory) / "validation-report.json").read_text())
    violations = [v["ruleName"] for plugin in report["pluginReports"] for v in plugin["violations"]]
    assert violations == []
