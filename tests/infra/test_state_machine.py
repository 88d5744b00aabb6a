"""The state machine: logging, tracing, timeout, the Distributed Map, and the data contract the handlers rely on."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_cdk.assertions import Template

from tests.infra.conftest import Synthesized, as_list, policy_statements

LAMBDA_SERVICE_ERRORS = [
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
]


def test_state_machine_logs_everything_traces_and_times_out(synthesized: Synthesized, definition: dict) -> None:
    # GIVEN the state machine resource
    props = synthesized.resource(synthesized.stack.workflow.state_machine)["Properties"]
    # WHEN / THEN it is Standard, logs ALL with execution data, traces, and times out after room for two jobs each
    # running to its deadline (jobTimeoutHours) plus Poll's 2-hour margin and an hour for the stop
    assert props["StateMachineType"] == "STANDARD"
    assert props["LoggingConfiguration"]["Level"] == "ALL"
    assert props["LoggingConfiguration"]["IncludeExecutionData"] is True
    assert props["TracingConfiguration"] == {"Enabled": True}
    assert definition["TimeoutSeconds"] == 2 * (72 + 2 + 1) * 3600


JOB_MAPS = [
    # (map, where its manifest key is in the state, the state after it)
    ("Run jobs", "$.run.manifest_key", "Plan resubmission"),
    ("Rerun failed records", "$.resubmission.manifest_key", "Finalize run"),
]


@pytest.mark.parametrize("name", [name for name, _key, _next in JOB_MAPS])
def test_max_concurrency_comes_from_the_string_context_value(states: dict[str, dict[str, Any]], name: str) -> None:
    # GIVEN the app synthesized with maxConcurrentJobs="7" (as -c passes it) / WHEN reading either job Map
    # THEN MaxConcurrency is the integer 7
    assert states[name]["MaxConcurrency"] == 7


@pytest.mark.parametrize(("name", "manifest_key", "next_state"), JOB_MAPS)
def test_maps_read_a_job_manifest_from_s3_and_run_standard_children(
    synthesized: Synthesized, states: dict[str, dict[str, Any]], name: str, manifest_key: str, next_state: str
) -> None:
    # GIVEN a job Map: the planned jobs, or the resubmission jobs
    jobs = states[name]
    bucket = synthesized.logical_id(synthesized.stack.data_bucket.bucket)
    # WHEN / THEN it is a Distributed Map over the JSON manifest a handler named, one Standard child per job
    assert jobs["ItemReader"] == {
        "Resource": "arn:<AWS::Partition>:states:::s3:getObject",
        "ReaderConfig": {"InputType": "JSON"},
        "Parameters": {"Bucket": f"<{bucket}>", "Key.$": manifest_key},
    }
    assert jobs["ItemProcessor"]["ProcessorConfig"] == {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"}
    assert jobs["ItemSelector"] == {"run.$": "$.run", "job.$": "$$.Map.Item.Value"}
    assert jobs["ResultPath"] is None
    assert jobs["Next"] == next_state


def test_rejected_input_fails_the_execution_with_the_handlers_error(states: dict[str, dict[str, Any]]) -> None:
    # GIVEN the first state
    preprocess = states["Preprocess input"]
    # WHEN its handler raises anything / THEN the error goes to $.error and "Input rejected" fails with it
    assert preprocess["Catch"] == [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Input rejected"}]
    assert states["Input rejected"] == {"Type": "Fail", "ErrorPath": "$.error.Error", "CausePath": "$.error.Cause"}
    assert preprocess["Parameters"] == {
        "input.$": "$",
        "execution_name.$": "$$.Execution.Name",
        "execution_id.$": "$$.Execution.Id",
    }
    assert preprocess["ResultPath"] == "$.run"


def test_every_lambda_task_returns_the_payload_and_retries_lambda_errors(
    definition: dict, states: dict[str, dict[str, Any]]
) -> None:
    # GIVEN every Task state
    tasks = {name: state for name, state in states.items() if state["Type"] == "Task"}
    # WHEN / THEN each calls its function directly (payload_response_only) and retries Lambda service errors first
    assert set(tasks) == {
        "Preprocess input",
        "Submit job",
        "Check job status",
        "Run job on demand",
        "Process job results",
        "Plan resubmission",
        "Submit retry job",
        "Check retry job status",
        "Run retry job on demand",
        "Process retry job results",
        "Finalize run",
    }
    for state in tasks.values():
        assert state["Resource"].startswith("<") and state["Resource"].endswith(".Arn>")
        assert state["Retry"][0]["ErrorEquals"] == LAMBDA_SERVICE_ERRORS
    assert definition["StartAt"] == "Preprocess input"


def test_job_loop_contract(states: dict[str, dict[str, Any]]) -> None:
    # GIVEN the per-job states / WHEN following the loop
    submit, check, process = states["Submit job"], states["Check job status"], states["Process job results"]
    # THEN each handler gets and returns the whole state, failures are routed to postprocessing with $.failure
    for state in (submit, check, process):
        assert state["ResultPath"] == "$"
        assert "Parameters" not in state and "InputPath" not in state
    to_process = [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.failure", "Next": "Process job results"}]
    assert submit["Catch"] == check["Catch"] == to_process
    assert process["Catch"] == [
        {"ErrorEquals": ["States.ALL"], "ResultPath": "$.failure", "Next": "Job results missing"}
    ]
    assert states["Job results missing"] == {"Type": "Pass", "End": True}
    assert process["End"] is True
    assert submit["Retry"][1] == {
        "ErrorEquals": ["ThrottlingException"],
        "IntervalSeconds": 5,
        "MaxAttempts": 8,
        "BackoffRate": 2,
        "JitterStrategy": "FULL",
    }
    # a full quota is waited out for as long as a job may run (72 h default): 15-minute steps, 4 per hour
    assert submit["Retry"][2] == {
        "ErrorEquals": ["ServiceQuotaExceededException"],
        "IntervalSeconds": 60,
        "MaxDelaySeconds": 900,
        "MaxAttempts": 72 * 4 + 6,
        "BackoffRate": 2,
        "JitterStrategy": "FULL",
    }
    assert check["Retry"][1]["ErrorEquals"] == ["ThrottlingException"]
    assert (submit["Next"], states["Job cancelled?"]["Default"], states["Wait for job"]["Next"], check["Next"]) == (
        "Job cancelled?",
        "Wait for job",
        "Check job status",
        "Job finished?",
    )
    assert states["Wait for job"]["Seconds"] == 60
    assert states["Job finished?"]["Choices"] == [
        {"Variable": "$.terminal", "BooleanEquals": True, "Next": "Process job results"}
    ]
    assert states["Job finished?"]["Default"] == "Wait for job"


def test_on_demand_jobs_loop_on_the_runner_and_batch_jobs_go_to_submit(states: dict[str, dict[str, Any]]) -> None:
    # GIVEN the first state of the per-job chain and the on-demand states
    first, run, finished = states["Job on demand?"], states["Run job on demand"], states["On-demand job finished?"]
    # WHEN / THEN a job marked on_demand goes to the runner, any other job (and an item without the flag) to Submit
    assert first["Choices"] == [
        {
            "And": [
                {"Variable": "$.job.on_demand", "IsPresent": True},
                {"Variable": "$.job.on_demand", "BooleanEquals": True},
            ],
            "Next": "Run job on demand",
        }
    ]
    assert first["Default"] == "Submit job"
    # AND the runner gets and returns the whole state, is called again until it says the job is done (Lambda's 15
    # minutes), and its failures go to postprocessing like Submit's and Poll's
    assert run["ResultPath"] == "$" and "Parameters" not in run
    assert run["Retry"][0]["ErrorEquals"] == LAMBDA_SERVICE_ERRORS
    assert run["Catch"] == [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.failure", "Next": "Process job results"}]
    assert run["Next"] == "On-demand job finished?"
    assert finished["Choices"] == [{"Variable": "$.terminal", "BooleanEquals": True, "Next": "Process job results"}]
    assert finished["Default"] == "Run job on demand"


def test_a_job_submit_found_cancelled_goes_straight_to_postprocessing(states: dict[str, dict[str, Any]]) -> None:
    # GIVEN the state after Submit / WHEN Submit found the run's cancel marker (no job) / THEN no wait, no poll
    assert states["Job cancelled?"]["Choices"] == [
        {"Variable": "$.cancelled", "BooleanEquals": True, "Next": "Process job results"}
    ]
    assert states["Job cancelled?"]["Default"] == "Wait for job"


def test_resubmission_jobs_run_the_same_chain_under_their_own_state_names(definition: dict) -> None:
    # GIVEN the item processors of the two job Maps
    planned = definition["States"]["Run jobs"]["ItemProcessor"]
    resubmitted = definition["States"]["Rerun failed records"]["ItemProcessor"]
    # WHEN the retry Map's state names are read as the planned Map's ("Submit retry job" -> "Submit job")
    renamed = json.loads(json.dumps(resubmitted).replace("Retry job", "Job").replace("retry job", "job"))
    # THEN both are the same chain: same tasks, waits, retries, catches and choices
    assert renamed == planned
    assert set(resubmitted["States"]) == {
        "Retry job on demand?",
        "Run retry job on demand",
        "On-demand retry job finished?",
        "Retry job cancelled?",
        "Submit retry job",
        "Wait for retry job",
        "Check retry job status",
        "Retry job finished?",
        "Process retry job results",
        "Retry job results missing",
    }


def test_resubmission_is_planned_after_the_jobs_and_skipped_when_it_fails(
    states: dict[str, dict[str, Any]],
) -> None:
    # GIVEN the states between the two job Maps
    plan, choice = states["Plan resubmission"], states["Records to resubmit?"]
    # WHEN / THEN planning sees the run and the execution input (resubmit_failed, max_records_per_job) and puts its
    # small plan into $.resubmission; the retry Map runs only when the plan has jobs, and Finalize comes either way
    assert plan["Parameters"] == {"run.$": "$.run", "execution_input.$": "$$.Execution.Input"}
    assert plan["ResultPath"] == "$.resubmission"
    assert plan["Next"] == "Records to resubmit?"
    # a failed plan leaves every row as the planned jobs wrote it: finalize without resubmission
    assert plan["Catch"] == [
        {"ErrorEquals": ["States.ALL"], "ResultPath": "$.resubmission_error", "Next": "Finalize run"}
    ]
    assert choice["Choices"] == [
        {"Variable": "$.resubmission.job_count", "NumericGreaterThan": 0, "Next": "Rerun failed records"}
    ]
    assert choice["Default"] == "Finalize run"
    # and so does a failed retry Map: the rows it did not merge keep their first result
    assert states["Rerun failed records"]["Catch"] == plan["Catch"]


def test_run_ends_on_whether_every_row_is_accounted_for(states: dict[str, dict[str, Any]]) -> None:
    # GIVEN the final states
    finalize, choice = states["Finalize run"], states["Every row accounted for?"]
    # WHEN / THEN finalize sees only the run, its summary decides success, otherwise RowsUnaccounted with its message
    assert finalize["Parameters"] == {"run.$": "$.run"}
    assert finalize["ResultPath"] == "$.summary"
    assert choice["Choices"] == [{"Variable": "$.summary.complete", "BooleanEquals": True, "Next": "Run succeeded"}]
    assert choice["Default"] == "Rows unaccounted for"
    assert states["Run succeeded"] == {"Type": "Succeed"}
    assert states["Rows unaccounted for"] == {
        "Type": "Fail",
        "Error": "RowsUnaccounted",
        "CausePath": "$.summary.message",
    }


def test_state_machine_reads_only_run_files(synthesized: Synthesized, template: Template) -> None:
    # GIVEN the state machine role's statements
    role = synthesized.stack.workflow.state_machine.role
    statements = policy_statements(template, synthesized.logical_id(role))
    bucket_arn = {"Fn::GetAtt": [synthesized.logical_id(synthesized.stack.data_bucket.bucket), "Arn"]}
    # WHEN picking its S3 statements
    s3 = [s for s in statements if any(a.startswith("s3:") for a in as_list(s["Action"]))]
    # THEN the item reader may get the job manifests (runs/<run>/jobs.json, runs/<run>/retry/jobs.json) and nothing
    # else of the bucket
    assert s3 == [
        {"Action": "s3:GetObject", "Effect": "Allow", "Resource": {"Fn::Join": ["", [bucket_arn, "/runs/*/jobs.json"]]}}
    ]


def test_only_step_functions_for_this_accounts_state_machines_may_assume_the_state_machine_role(
    synthesized: Synthesized,
) -> None:
    # GIVEN the state machine's role
    trust = synthesized.resource(synthesized.stack.workflow.state_machine.role)["Properties"][
        "AssumeRolePolicyDocument"
    ]
    # WHEN reading its single trust statement
    (statement,) = trust["Statement"]
    # THEN states.amazonaws.com may assume it on behalf of a state machine of this account and region only
    # (confused deputy prevention, as the Step Functions guide's "Creating an IAM role for your state machine" shows)
    assert statement["Principal"] == {"Service": "states.amazonaws.com"}
    assert statement["Condition"]["StringEquals"] == {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}
    assert statement["Condition"]["ArnLike"]["aws:SourceArn"]["Fn::Join"][1] == [
        "arn:",
        {"Ref": "AWS::Partition"},
        ":states:",
        {"Ref": "AWS::Region"},
        ":",
        {"Ref": "AWS::AccountId"},
        ":stateMachine:*",
    ]
