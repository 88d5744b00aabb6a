"""Dashboards and alarms: one CloudWatch dashboard per stack, alarms on what needs a person, optional alarm mail.

```
BatchObservability    dashboard: executions by outcome (AWS/States), jobs planned/submitted, records prepared/
                      succeeded/failed/resubmitted/recovered, input/output tokens, jobs by status, estimated cost
                      (BedrockBatch EMF), Lambda errors, throttles and duration per function
                      alarms: execution failed, execution timed out, failed-record ratio, failed-job ratio,
                      Lambda errors per function
GatewayObservability  dashboard: requests, latency and integration latency p50/p99, 4XX/5XX, Lambda throttles,
                      errors and duration, cost per bot (CostUSD EMF), time to first token p50/p99 per text bot
                      (TimeToFirstToken), Bedrock errors by class (BedrockErrors: throttling, validation, upstream,
                      ...), guardrail interventions per guarded bot (GuardrailInterventions)
                      alarms: 5XX rate, 4XX rate (stage throttling answers 429), Lambda errors, Lambda throttles
AlarmTopic            only when alarmEmail is set: a KMS-encrypted SNS topic (SSL enforced) with an email subscription
```
Metric names, namespaces and dimensions are the ones the handlers emit (Powertools EMF: the ``service`` dimension is
the function's ``POWERTOOLS_SERVICE_NAME``; tests/infra/test_observability.py checks both against the template).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import aws_cdk as cdk
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from stacks.config import GatewayBot, ObservabilityConfig
from stacks.constructs.conditions import any_resource_arn, for_this_account
from stacks.constructs.gateway_keys import budget_alarm, team_key_widgets
from stacks.constructs.gateway_service import METRICS_NAMESPACE as FARGATE_METRICS_NAMESPACE
from stacks.constructs.gateway_service import GatewayService
from stacks.constructs.python_function import PythonFunction

PERIOD = cdk.Duration.minutes(5)
# The Powertools service name (the EMF ``service`` dimension) of each batch function, keyed as BatchWorkflow.functions.
BATCH_SERVICES = {
    "preprocess": "batch-preprocess",
    "submit": "batch-submit-job",
    "poll": "batch-poll-job",
    "postprocess": "batch-postprocess",
    "resubmit": "batch-resubmit",
    "finalize": "batch-finalize",
    "on_demand": "batch-on-demand",
}
GATEWAY_SERVICE = "model-gateway"
# The gateway's EMF metrics (lambdas/gateway/metrics.py), and the error classes of BedrockErrors (the OpenAI error types
# lambdas/gateway/errors.py maps Bedrock failures to).
GATEWAY_TTFT = "TimeToFirstToken"
GATEWAY_COST = "CostUSD"  # per bot
GATEWAY_INPUT_TOKENS = "InputTokens"  # lambdas/gateway/metrics.py, per bot
GATEWAY_OUTPUT_TOKENS = "OutputTokens"
GATEWAY_GUARDRAIL_INTERVENTIONS = "GuardrailInterventions"
GATEWAY_BEDROCK_ERRORS = "BedrockErrors"
GATEWAY_ERROR_CLASSES = (
    "rate_limit_error",
    "insufficient_quota",  # ServiceQuotaExceededException: a quota no retry clears
    "invalid_request_error",
    "not_found_error",
    "upstream_error",
    "service_unavailable",
    "timeout",
    "server_error",
)
# Which batch function emits which metric (lambdas/*/handler.py).
BATCH_METRICS = {
    "RecordsPrepared": "preprocess",
    "JobsPlanned": "preprocess",
    "JobsSubmitted": "submit",
    "RecordsSucceeded": "postprocess",
    "RecordsFailed": "postprocess",
    "InputTokens": "postprocess",
    "OutputTokens": "postprocess",
    "RecordsResubmitted": "resubmit",
    "RunsFinalized": "finalize",
    "RecordsRecovered": "finalize",
    "EstimatedCostUSD": "finalize",
    "OnDemandRecords": "on_demand",  # records Run job on demand answered through the runtime (on-demand prices)
}
# Job status transitions (lambdas/shared/observability.py record_job_status): metric JOB_STATUS_METRIC with dimensions
# Status and service. Submit counts "Submitted"; Poll counts every later status of GetModelInvocationJob.
JOB_STATUS_METRIC = "JobStatusChanges"
JOB_FAILED_STATUSES = ("Failed", "Expired", "Stopped")  # terminal statuses of a job that answered nothing (or not all)
JOB_DONE_STATUSES = ("Completed", "PartiallyCompleted")
JOB_STATUSES = {
    "Submitted": "submit",
    "Validating": "poll",
    "Scheduled": "poll",
    "InProgress": "poll",
    "Stopping": "poll",
    "Completed": "poll",
    "PartiallyCompleted": "poll",
    "Failed": "poll",
    "Stopped": "poll",
    "Expired": "poll",
}
WIDTH = 12  # two widgets per row (the dashboard grid is 24 wide)


class AlarmTopic(Construct):
    """``topic``: an SNS topic for alarm actions, encrypted with its own key (``key``), SSL enforced, mailing
    ``email``. CloudWatch alarms can publish to an encrypted topic only with a customer managed key that lets
    cloudwatch.amazonaws.com use it (the AWS managed aws/sns key cannot).

    The topic policy (which ``enforce_ssl`` creates, replacing SNS's default policy) and the key policy let
    cloudwatch.amazonaws.com publish and use the key for this account's alarms in this region only
    (``aws:SourceAccount``, ``aws:SourceArn`` ``arn:<partition>:cloudwatch:<region>:<account>:alarm:*``). The key
    policy cannot name the alarms themselves: they refer to the topic, which refers to the key (a cycle)."""

    def __init__(self, scope: Construct, id_: str, *, email: str) -> None:
        super().__init__(scope, id_)
        cloudwatch = iam.ServicePrincipal("cloudwatch.amazonaws.com")
        alarm_arns = any_resource_arn(self, "cloudwatch", "alarm", cdk.ArnFormat.COLON_RESOURCE_NAME)
        alarms = for_this_account(self, alarm_arns)
        self.key = kms.Key(self, "Key", enable_key_rotation=True, description="Encrypts the alarm topic")
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowCloudWatchAlarmsOfThisAccount",
                principals=[cloudwatch],
                actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                resources=["*"],
                conditions=alarms,
            )
        )
        self.topic = sns.Topic(self, "Topic", display_name="Bedrock alarms", master_key=self.key, enforce_ssl=True)
        self.topic.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowCloudWatchAlarmsOfThisAccount",
                principals=[cloudwatch],
                actions=["sns:Publish"],
                resources=[self.topic.topic_arn],
                conditions=alarms,
            )
        )
        self.topic.add_subscription(subscriptions.EmailSubscription(email))

    def notify(self, alarms: Sequence[cw.Alarm]) -> None:
        action = cw_actions.SnsAction(self.topic)
        for alarm in alarms:
            alarm.add_alarm_action(action)


def _alarm_topic(scope: Construct, cfg: ObservabilityConfig) -> AlarmTopic | None:
    return AlarmTopic(scope, "AlarmTopic", email=cfg.alarm_email) if cfg.alarm_email else None


def _at_least_once(scope: Construct, id_: str, metric: cw.IMetric, description: str) -> cw.Alarm:
    return cw.Alarm(
        scope,
        id_,
        metric=metric,
        threshold=1,
        evaluation_periods=1,
        comparison_operator=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
        alarm_description=description,
    )


def _percent_over(scope: Construct, id_: str, metric: cw.IMetric, percent: int, description: str) -> cw.Alarm:
    return cw.Alarm(
        scope,
        id_,
        metric=metric,
        threshold=percent,
        evaluation_periods=1,
        comparison_operator=cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
        treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
        alarm_description=description,
    )


def _service_widgets(service: GatewayService) -> list[cw.IWidget]:
    """The Fargate gateway's capacity: task CPU and memory, and connections and requests per task."""
    return [
        cw.GraphWidget(
            title="Tasks CPU and memory (%)",
            left=[
                service.service.metric_cpu_utilization(period=PERIOD, label="CPU"),
                service.service.metric_memory_utilization(period=PERIOD, label="Memory"),
            ],
            width=WIDTH,
        ),
        cw.GraphWidget(
            title="Connections and requests per task",
            left=[service.load_balancer.metrics.active_connection_count(period=PERIOD, label="Active connections")],
            right=[service.target_group.metrics.request_count_per_target(period=PERIOD, label="Requests per task")],
            width=WIDTH,
        ),
    ]


def _function_widgets(functions: Mapping[str, PythonFunction]) -> list[cw.IWidget]:
    fns = {key: fn.function for key, fn in functions.items()}
    return [
        cw.GraphWidget(
            title="Lambda errors and throttles",
            left=[fn.metric_errors(period=PERIOD, label=f"{key} errors") for key, fn in fns.items()],
            right=[fn.metric_throttles(period=PERIOD, label=f"{key} throttles") for key, fn in fns.items()],
            width=WIDTH,
        ),
        cw.GraphWidget(
            title="Lambda duration p99 (ms)",
            left=[fn.metric_duration(period=PERIOD, statistic="p99", label=key) for key, fn in fns.items()],
            width=WIDTH,
        ),
    ]


class BatchObservability(Construct):
    """``dashboard``, ``alarms`` (by name) and ``alarm_topic`` (None without ``alarmEmail``) of the batch stack."""

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        state_machine: sfn.StateMachine,
        functions: Mapping[str, PythonFunction],
        cfg: ObservabilityConfig,
    ) -> None:
        super().__init__(scope, id_)
        namespace = PythonFunction.METRICS_NAMESPACE  # the functions' POWERTOOLS_METRICS_NAMESPACE

        def emf(name: str) -> cw.Metric:
            return cw.Metric(
                namespace=namespace,
                metric_name=name,
                dimensions_map={"service": BATCH_SERVICES[BATCH_METRICS[name]]},
                statistic="Sum",
                period=PERIOD,
                label=name,
            )

        executions = [
            state_machine.metric_started(period=PERIOD, label="Started"),
            state_machine.metric_succeeded(period=PERIOD, label="Succeeded"),
            state_machine.metric_failed(period=PERIOD, label="Failed"),
            state_machine.metric_timed_out(period=PERIOD, label="Timed out"),
            state_machine.metric_aborted(period=PERIOD, label="Aborted"),
        ]
        failed_ratio = cw.MathExpression(
            expression="IF(succeeded + failed > 0, 100 * failed / (succeeded + failed), 0)",
            using_metrics={"succeeded": emf("RecordsSucceeded"), "failed": emf("RecordsFailed")},
            period=PERIOD,
            label="Failed records (%)",
        )

        def job_status(status: str) -> cw.Metric:
            return cw.Metric(
                namespace=namespace,
                metric_name=JOB_STATUS_METRIC,
                dimensions_map={"Status": status, "service": BATCH_SERVICES[JOB_STATUSES[status]]},
                statistic="Sum",
                period=PERIOD,
                label=status,
            )

        ended = {s.lower(): job_status(s) for s in (*JOB_FAILED_STATUSES, *JOB_DONE_STATUSES)}
        failed_jobs = " + ".join(s.lower() for s in JOB_FAILED_STATUSES)
        job_failed_ratio = cw.MathExpression(
            expression=f"IF({' + '.join(ended)} > 0, 100 * ({failed_jobs}) / ({' + '.join(ended)}), 0)",
            using_metrics=ended,
            period=PERIOD,
            label="Failed jobs (%)",
        )
        self.alarms = {
            "ExecutionFailed": _at_least_once(
                self,
                "ExecutionFailedAlarm",
                state_machine.metric_failed(period=PERIOD),
                "A batch run (state machine execution) failed.",
            ),
            "ExecutionTimedOut": _at_least_once(
                self,
                "ExecutionTimedOutAlarm",
                state_machine.metric_timed_out(period=PERIOD),
                "A batch run (state machine execution) timed out.",
            ),
            "RecordFailureRatio": _percent_over(
                self,
                "RecordFailureRatioAlarm",
                failed_ratio,
                cfg.alarm_record_failure_percent,
                f"More than {cfg.alarm_record_failure_percent}% of the records of finished jobs failed.",
            ),
            "JobFailureRatio": _percent_over(
                self,
                "JobFailureRatioAlarm",
                job_failed_ratio,
                cfg.alarm_job_failure_percent,
                f"More than {cfg.alarm_job_failure_percent}% of the Bedrock batch jobs that ended failed, expired or "
                "were stopped.",
            ),
        }
        for key, fn in functions.items():
            self.alarms[f"{key}Errors"] = _at_least_once(
                self, f"{key.capitalize()}ErrorsAlarm", fn.function.metric_errors(period=PERIOD), f"{key} errors."
            )
        self.alarm_topic = _alarm_topic(self, cfg)
        if self.alarm_topic:
            self.alarm_topic.notify(list(self.alarms.values()))

        self.dashboard = cw.Dashboard(self, "Dashboard", default_interval=cdk.Duration.days(1))
        self.dashboard.add_widgets(
            cw.GraphWidget(title="Executions by outcome", left=executions, width=WIDTH),
            cw.GraphWidget(
                title="Jobs",
                left=[emf("JobsPlanned"), emf("JobsSubmitted")],
                right=[emf("RunsFinalized")],
                width=WIDTH,
            ),
        )
        self.dashboard.add_widgets(
            cw.GraphWidget(
                title="Records",
                left=[
                    emf("RecordsPrepared"),
                    emf("RecordsSucceeded"),
                    emf("RecordsFailed"),
                    emf("RecordsResubmitted"),
                    emf("RecordsRecovered"),
                ],
                right=[failed_ratio],
                width=WIDTH,
            ),
            cw.GraphWidget(title="Tokens", left=[emf("InputTokens"), emf("OutputTokens")], width=WIDTH),
        )
        jobs_by_status = [job_status(status) for status in JOB_STATUSES]
        self.dashboard.add_widgets(
            cw.GraphWidget(title="Jobs by status", left=jobs_by_status, width=WIDTH),
            cw.GraphWidget(
                title="Estimated cost (USD, batch prices from prices.json)",
                left=[emf("EstimatedCostUSD")],
                width=WIDTH,
            ),
        )
        self.dashboard.add_widgets(
            cw.GraphWidget(
                title="Records answered on demand (runtime, on-demand prices)",
                left=[emf("OnDemandRecords")],
                width=WIDTH,
            )
        )
        self.dashboard.add_widgets(*_function_widgets(functions))
        self.dashboard.add_widgets(
            cw.AlarmStatusWidget(title="Alarms", alarms=list(self.alarms.values()), width=2 * WIDTH)
        )


class GatewayObservability(Construct):
    """``dashboard``, ``alarms`` (by name) and ``alarm_topic`` (None without ``alarmEmail``) of the gateway stack."""

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        bots: Sequence[GatewayBot],
        cfg: ObservabilityConfig,
        api: apigw.RestApi | None = None,
        function: PythonFunction | None = None,
        service: GatewayService | None = None,
        key_budget_alarm_percent: int | None = None,
    ) -> None:
        """``api`` and ``function`` (the Lambda gateway: API Gateway's metrics) or ``service`` (the Fargate gateway:
        the load balancer's and the ECS service's metrics). ``key_budget_alarm_percent``: team keys' widgets and
        their budget alarm (``stacks/constructs/gateway_keys.py``); None: neither."""
        super().__init__(scope, id_)
        lambda_parts = api is not None and function is not None
        if lambda_parts == (service is not None) or (not lambda_parts and (api is not None or function is not None)):
            raise ValueError("GatewayObservability takes api and function (Lambda) or service (Fargate), not both")
        # The app's POWERTOOLS_METRICS_NAMESPACE, which events.py uses: the function's, or the container's.
        namespace = function.METRICS_NAMESPACE if function is not None else FARGATE_METRICS_NAMESPACE
        if api is not None:
            requests = api.metric_count(period=PERIOD, label="Requests")
            client_errors: cw.IMetric = api.metric_client_error(period=PERIOD, label="4XX")
            server_errors: cw.IMetric = api.metric_server_error(period=PERIOD, label="5XX")
            latency = [
                api.metric_latency(period=PERIOD, statistic="p50", label="Latency p50"),
                api.metric_latency(period=PERIOD, statistic="p99", label="Latency p99"),
                api.metric_integration_latency(period=PERIOD, statistic="p50", label="Integration p50"),
                api.metric_integration_latency(period=PERIOD, statistic="p99", label="Integration p99"),
            ]
            latency_title = "Latency p50/p99 (ms)"
        else:
            assert service is not None
            balancer = service.load_balancer.metrics
            requests = balancer.request_count(period=PERIOD, label="Requests")

            def answered(kind: str) -> cw.MathExpression:
                # What clients saw: the load balancer's own answers (no healthy target, 502/503/504) and the app's.
                elb, target = (
                    (elbv2.HttpCodeElb.ELB_4XX_COUNT, elbv2.HttpCodeTarget.TARGET_4XX_COUNT)
                    if kind == "4XX"
                    else (elbv2.HttpCodeElb.ELB_5XX_COUNT, elbv2.HttpCodeTarget.TARGET_5XX_COUNT)
                )
                ids = f"elb{kind[0]}xx", f"target{kind[0]}xx"  # unique in the error-rates graph
                return cw.MathExpression(
                    expression=f"FILL({ids[0]}, 0) + FILL({ids[1]}, 0)",
                    using_metrics={
                        ids[0]: balancer.http_code_elb(elb, period=PERIOD),
                        ids[1]: balancer.http_code_target(target, period=PERIOD),
                    },
                    period=PERIOD,
                    label=kind,
                )

            client_errors, server_errors = answered("4XX"), answered("5XX")
            latency = [
                balancer.target_response_time(period=PERIOD, statistic="p50", label="Target response p50"),
                balancer.target_response_time(period=PERIOD, statistic="p99", label="Target response p99"),
            ]
            latency_title = "Response time to the last byte p50/p99 (s)"

        def rate(errors_id: str, errors: cw.IMetric, label: str) -> cw.MathExpression:
            # Expression ids are unique per graph: both rates share the error-rates widget.
            return cw.MathExpression(
                expression=f"IF(requests > 0, 100 * {errors_id} / requests, 0)",
                using_metrics={errors_id: errors, "requests": requests},
                period=PERIOD,
                label=label,
            )

        rate_5xx, rate_4xx = rate("server", server_errors, "5XX (%)"), rate("client", client_errors, "4XX (%)")
        throttled = "stage throttling answers 429; " if api is not None else ""
        self.alarms = {
            "Gateway5xxRate": _percent_over(
                self,
                "Gateway5xxRateAlarm",
                rate_5xx,
                cfg.alarm_gateway_5xx_percent,
                f"More than {cfg.alarm_gateway_5xx_percent}% of gateway requests failed with 5XX.",
            ),
            "Gateway4xxRate": _percent_over(
                self,
                "Gateway4xxRateAlarm",
                rate_4xx,
                cfg.alarm_gateway_4xx_percent,
                f"More than {cfg.alarm_gateway_4xx_percent}% of gateway requests were answered 4XX "
                f"({throttled}rejected access keys 401/403).",
            ),
        }
        if key_budget_alarm_percent is not None:
            self.alarms["TeamKeyBudget"] = budget_alarm(self, namespace, key_budget_alarm_percent, PERIOD)
        if function is not None:
            fn = function.function
            self.alarms["FunctionErrors"] = _at_least_once(
                self, "FunctionErrorsAlarm", fn.metric_errors(period=PERIOD), "The gateway function failed."
            )
            self.alarms["FunctionThrottles"] = _at_least_once(
                self, "FunctionThrottlesAlarm", fn.metric_throttles(period=PERIOD), "The gateway function throttled."
            )
            compute_widgets = _function_widgets({"gateway": function})
        else:
            assert service is not None
            self.alarms["UnhealthyTasks"] = _at_least_once(
                self,
                "UnhealthyTasksAlarm",
                service.target_group.metrics.unhealthy_host_count(period=PERIOD, statistic="Maximum"),
                "A gateway task failed the load balancer's health check (GET /health).",
            )
            self.alarms["RejectedConnections"] = _at_least_once(
                self,
                "RejectedConnectionsAlarm",
                service.load_balancer.metrics.rejected_connection_count(period=PERIOD),
                "The load balancer rejected connections: it reached its maximum number of connections.",
            )
            compute_widgets = _service_widgets(service)
        self.alarm_topic = _alarm_topic(self, cfg)
        if self.alarm_topic:
            self.alarm_topic.notify(list(self.alarms.values()))

        cost = [
            cw.Metric(
                namespace=namespace,
                metric_name=GATEWAY_COST,
                dimensions_map={"bot": bot.name, "service": GATEWAY_SERVICE},
                statistic="Sum",
                period=PERIOD,
                label=bot.name,
            )
            for bot in bots
        ]

        def gateway_metric(name: str, statistic: str, label: str, **dimensions: str) -> cw.Metric:
            return cw.Metric(
                namespace=namespace,
                metric_name=name,
                dimensions_map={**dimensions, "service": GATEWAY_SERVICE},
                statistic=statistic,
                period=PERIOD,
                label=label,
            )

        text_bots = [bot.name for bot in bots if bot.modality == "text"]  # only streamed text has a first token
        ttft = {
            stat: [gateway_metric(GATEWAY_TTFT, stat, f"{name} {stat}", bot=name) for name in text_bots]
            for stat in ("p50", "p99")
        }
        errors_by_class = [
            gateway_metric(GATEWAY_BEDROCK_ERRORS, "Sum", error_class, error_class=error_class)
            for error_class in GATEWAY_ERROR_CLASSES
        ]
        guarded = [bot.name for bot in bots if bot.guardrail_id]
        interventions = [gateway_metric(GATEWAY_GUARDRAIL_INTERVENTIONS, "Sum", name, bot=name) for name in guarded]
        self.dashboard = cw.Dashboard(self, "Dashboard", default_interval=cdk.Duration.days(1))
        self.dashboard.add_widgets(
            cw.GraphWidget(
                title="Requests and errors", left=[requests], right=[client_errors, server_errors], width=WIDTH
            ),
            cw.GraphWidget(title=latency_title, left=latency, width=WIDTH),
        )
        tokens = [
            gateway_metric(name, "Sum", f"{bot} {kind}", bot=bot)
            for bot in (b.name for b in bots)
            for name, kind in ((GATEWAY_INPUT_TOKENS, "in"), (GATEWAY_OUTPUT_TOKENS, "out"))
        ]
        self.dashboard.add_widgets(
            cw.GraphWidget(title="Error rates (%)", left=[rate_4xx, rate_5xx], width=WIDTH),
            cw.GraphWidget(title="Estimated cost per bot (USD)", left=cost, stacked=True, width=WIDTH),
        )
        self.dashboard.add_widgets(
            cw.GraphWidget(title="Tokens per bot (input, output)", left=tokens, stacked=True, width=2 * WIDTH),
        )
        self.dashboard.add_widgets(
            cw.GraphWidget(title="Time to first token p50 per bot (ms)", left=ttft["p50"], width=WIDTH),
            cw.GraphWidget(title="Time to first token p99 per bot (ms)", left=ttft["p99"], width=WIDTH),
        )
        row: list[cw.IWidget] = [
            cw.GraphWidget(title="Bedrock errors by class", left=errors_by_class, stacked=True, width=WIDTH)
        ]
        if interventions:  # only bots with a guardrail can be blocked by one
            row.append(
                cw.GraphWidget(title="Guardrail interventions per bot", left=interventions, stacked=True, width=WIDTH)
            )
        self.dashboard.add_widgets(*row)
        self.dashboard.add_widgets(*compute_widgets)
        if key_budget_alarm_percent is not None:
            widgets = team_key_widgets(namespace, PERIOD, WIDTH)
            self.dashboard.add_widgets(*widgets[:2])
            self.dashboard.add_widgets(*widgets[2:])
        self.dashboard.add_widgets(
            cw.AlarmStatusWidget(title="Alarms", alarms=list(self.alarms.values()), width=2 * WIDTH)
        )
