"""``python -m cli batch``: run a batch inference locally (moto + emulator) or on the deployed stack (``--target aws``)
and write the results to a folder; ``python -m cli batch cancel <run id> --target aws``: cancel a run of the deployed
stack (its cancel marker, ``lambdas.shared.cancel``)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from local.executions import CancelOutcome

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2
# Static (the emulator package is imported only when a command runs); a test checks it names every fault.
FAULTS_HELP = (
    "emulator faults, comma-separated name=value: record_error_rate=F (0-1), record_error_seed=TEXT, "
    "record_error_codes=C:C (400, 408, 429, 500, 503), job_partial=N, "
    "job_failed=N, job_expired=N, job_stopped=N (jobs), submit_throttle=N, submit_quota=N, poll_throttle=N (calls), "
    "corrupt_output_lines=N (lines), runtime_throttle=N, model_error=N (runtime calls), stream_error_after=K "
    "(text deltas), stream_error=NAME (a ConverseStream exception), video_failed=N (video invocations), "
    "runtime_error=EXCEPTION:N (runtime calls that list that bedrock-runtime exception, e.g. "
    "ModelNotReadyException:2); e.g. record_error_rate=0.05,job_failed=1 "
    "(see local/emulator/faults.py)"
)


def add_parser(commands: Any) -> None:
    p = commands.add_parser("batch", help="run a batch inference over a file or a Hugging Face dataset")
    p.add_argument(
        "--target",
        choices=["local", "aws"],
        default="local",
        help="local: moto + the Bedrock emulator; aws: the deployed stack with your AWS credentials",
    )
    p.add_argument("--stack-name", default="BedrockBatchInference", help="--target aws: the deployed stack's name")
    # --input, --model-id and --output are required for a run, checked in run(): ``batch cancel`` takes none of them
    p.add_argument(
        "--input",
        help="required: a local CSV/Parquet/JSONL file, s3://... (--target aws: in the stack's bucket), or hf:ORG/NAME",
    )
    p.add_argument("--split", default="train", help="dataset split for hf: inputs (default: train)")
    p.add_argument("--model-id", help="required: Bedrock model id, e.g. anthropic.claude-3-haiku-20240307-v1:0")
    p.add_argument("--prompt-id", help="a key of prompt_id_to_template in prompt_templates.py (text models)")
    p.add_argument("--max-records-per-job", type=int, help="records per Bedrock job (100-50000)")
    p.add_argument("--max-num-jobs", type=int, help="refuse to run if more jobs than this would be needed")
    p.add_argument("--max-concurrent-jobs", type=int, help="override maxConcurrentJobs from cdk.json")
    p.add_argument("--job-name-prefix", default="cli", help="prefix of the Bedrock job names")
    p.add_argument("--invocation-type", choices=["InvokeModel", "Converse"], help="Bedrock batch invocation type")
    p.add_argument("--model-family", help="model family, for ids the registry cannot map (application profiles)")
    p.add_argument(
        "--no-resubmit", action="store_true", help="do not resubmit failed records once (resubmit_failed=false)"
    )
    p.add_argument("--inference-params", help='JSON, e.g. \'{"max_tokens": 512, "temperature": 0.2}\'')
    p.add_argument("--step-seconds", type=float, default=0.2, help="emulator: seconds a job spends in each status")
    p.add_argument(
        "--local-handlers",
        type=int,
        help="local: data-plane handlers (preprocess, postprocess, ...) running at once in the local process, which "
        "bounds its memory (default: 2, 1 with less than 2 GB free); Lambda's concurrency on AWS is not affected",
    )
    p.add_argument("--faults", default="", metavar="SPEC", help=FAULTS_HELP)
    p.add_argument("--output", type=Path, help="required: folder for the output Parquet files and summary.json")
    p.add_argument("--quiet", action="store_true", help="no progress display")
    p.set_defaults(func=run)
    actions = p.add_subparsers(dest="batch_action", metavar="{cancel}")
    c = actions.add_parser(
        "cancel",
        help="cancel a running run: no new job starts, jobs in flight stop, processed records are delivered",
        description="Write the run's cancel marker runs/<run id>/cancel.json into the stack's bucket. The run submits "
        "no new job, stops the jobs in flight (Bedrock delivers the records they processed), takes no more on-demand "
        "records and resubmits nothing; its output still holds every row, those not processed with error_code "
        "batch_cancelled.",
    )
    c.add_argument(
        "run_id",
        metavar="RUN_ID",
        help="the run's id, as `python -m cli batch` prints it (run <id>: ...), or a batch id",
    )
    # SUPPRESS: given before `cancel` (batch --target aws cancel ...) the batch parser's value stays
    c.add_argument("--target", choices=["local", "aws"], default=argparse.SUPPRESS, help="aws: the deployed stack")
    c.add_argument("--stack-name", default=argparse.SUPPRESS, help="the deployed stack's name")
    c.set_defaults(func=cancel)


def fail(message: str, code: int = EXIT_BAD_INPUT) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


def execution_input(args: argparse.Namespace, source: dict[str, str]) -> dict[str, Any]:
    payload: dict[str, Any] = {"model_id": args.model_id, "job_name_prefix": args.job_name_prefix, **source}
    if args.prompt_id:
        payload["prompt_id"] = args.prompt_id
    if args.max_records_per_job is not None:
        payload["max_records_per_job"] = args.max_records_per_job
    if args.max_num_jobs is not None:
        payload["max_num_jobs"] = args.max_num_jobs
    if args.inference_params:
        payload["inference_params"] = json.loads(args.inference_params)
    if args.invocation_type:
        payload["invocation_type"] = args.invocation_type
    if args.model_family:
        payload["model_family"] = args.model_family
    if args.no_resubmit:
        payload["resubmit_failed"] = False
    return payload


LOCAL_CANCEL = (
    "a local run lives only inside the process that runs it (python -m cli batch, or the local gateway's runtime), "
    "so another command cannot reach it: stop that process with Ctrl-C, or cancel a local gateway batch with "
    "POST /v1/batches/<id>/cancel; pass --target aws to cancel a run of the deployed stack"
)


def cancel(args: argparse.Namespace) -> int:
    """``batch cancel``: write the run's cancel marker if the run is running and has none, and say what follows.
    Missing credentials, region or stack raise ``AwsSetupError`` (one line from ``cli.__main__``)."""
    if args.target != "aws":
        return fail(LOCAL_CANCEL)
    from cli.aws_errors import aws_session
    from cli.aws_target import AwsBatchTarget

    target = AwsBatchTarget(aws_session(), args.stack_name)
    return report_cancel(target.cancel(args.run_id), target.bucket)


def report_cancel(outcome: CancelOutcome, bucket: str) -> int:
    """Print what a cancel did (``StateMachineRuns.cancel``); its exit code."""
    run, marker = outcome.run_id, f"s3://{bucket}/{outcome.marker}"
    if outcome.state == "unknown":
        return fail(
            f"no run '{run}' in s3://{bucket}/runs/ and no running execution of the stack's state machine has it: "
            "check the id (python -m cli batch prints it as 'run <id>: ...'; a gateway batch's id works too)"
        )
    if outcome.state == "finished":
        return fail(f"run '{run}' has finished (its summary.json is written): there is nothing to cancel", EXIT_FAILED)
    if outcome.state == "not_running":
        return fail(
            f"run '{run}' is not running (no running execution of the stack's state machine has it: it failed or was "
            "aborted): there is nothing to cancel",
            EXIT_FAILED,
        )
    if outcome.state == "already_requested":
        print(f"run {run}: a cancel was already requested at {outcome.requested_at} ({marker}); nothing written")
    else:
        print(f"run {run}: cancel requested at {outcome.requested_at} ({marker})")
    if outcome.jobs_planned is None:
        print("- the run has not planned its jobs yet: none will be submitted")
    else:
        waiting = outcome.jobs_planned - outcome.jobs_ended
        print(
            f"- {outcome.jobs_ended} of {outcome.jobs_planned} jobs have ended and keep their results; the other "
            f"{waiting}: a job not yet submitted is not submitted, a Bedrock job in flight is stopped "
            "(StopModelInvocationJob) and delivers the records it processed, an on-demand job takes no more records"
        )
    print(
        "- nothing is resubmitted; every record already processed is in the output, every other row has error_code "
        "batch_cancelled; the execution ends SUCCEEDED"
    )
    print(f"- execution: {outcome.execution_arn}")
    return EXIT_OK


def run(args: argparse.Namespace) -> int:
    from local.emulator.faults import FaultSpecError, parse_faults

    missing = [
        flag
        for flag, value in (("--input", args.input), ("--model-id", args.model_id), ("--output", args.output))
        if value is None
    ]
    if missing:
        return fail(f"the following arguments are required: {', '.join(missing)} (or: batch cancel RUN_ID)")

    try:
        faults = parse_faults(args.faults)
    except FaultSpecError as exc:
        return fail(f"--faults: {exc}")
    if args.inference_params:
        try:
            json.loads(args.inference_params)
        except ValueError as exc:
            return fail(f"--inference-params is not valid JSON ({exc}); e.g. '{{\"max_tokens\": 512}}'")
    local_path: Path | None = None
    source: dict[str, str] = {}
    if args.input.startswith("hf:"):
        source = {"dataset_id": args.input.removeprefix("hf:"), "split": args.split}
    elif args.input.startswith("s3://"):
        if args.target == "local":
            return fail(f"--input {args.input}: the local target starts with an empty S3; give a local file path")
        source = {"s3_uri": args.input}
    else:
        local_path = Path(args.input)
        if not local_path.is_file():
            return fail(f"--input {args.input} is not a file; give a CSV/Parquet/JSONL file, s3://... or hf:ORG/NAME")
    if args.target == "aws":
        if faults:
            return fail("--faults injects emulator faults: it only works with --target local")
        if args.local_handlers is not None:
            return fail("--local-handlers bounds the local process: it only works with --target local")
        return _run_on_aws(args, local_path, source)
    from local.runner import LocalRuntime, RuntimeOptions

    if args.local_handlers is not None and args.local_handlers < 1:
        return fail(f"--local-handlers must be >= 1, got {args.local_handlers}")
    options = RuntimeOptions(
        max_concurrent_jobs=args.max_concurrent_jobs,
        step_seconds=args.step_seconds,
        faults=faults,
        max_data_plane_handlers=args.local_handlers,
    )
    with LocalRuntime(options) as runtime:
        return execute(runtime, args, local_path, source)


def _run_on_aws(args: argparse.Namespace, local_path: Path | None, source: dict[str, str]) -> int:
    """Missing credentials, region or stack raise ``AwsSetupError``: ``cli.__main__`` prints it in one line."""
    from cli.aws_errors import aws_session
    from cli.aws_target import AwsBatchTarget

    if args.max_concurrent_jobs is not None:
        return fail("--max-concurrent-jobs is fixed at deploy time on AWS: set maxConcurrentJobs in cdk.json")
    target = AwsBatchTarget(aws_session(), args.stack_name)
    return execute(target, args, local_path, source)


def denied_model_access(summary: dict[str, Any]) -> bool:
    """Did Bedrock refuse the model to a job of the run (the job's message names missing model access)?"""
    from cli.aws_errors import names_model_access

    jobs = [*summary.get("jobs", []), *(summary.get("resubmission") or {}).get("jobs", [])]
    return any(names_model_access(job.get("message")) for job in jobs)


def execute(target: Any, args: argparse.Namespace, local_path: Path | None, source: dict[str, str]) -> int:
    """Upload the input if it is local, start the execution, follow it, then download results and summary.

    A run Bedrock refused for want of model access raises ``AwsSetupError`` (one line, exit 2, from ``cli.__main__``).
    """
    from cli.aws_errors import AwsSetupError, model_access_fix, names_model_access
    from cli.progress import BatchProgress

    if local_path is not None:
        source = {"s3_uri": target.upload_input(local_path)}
    execution_arn = target.start(execution_input(args, source))
    with BatchProgress(target, execution_arn, enabled=not args.quiet) as progress:
        outcome = target.wait(execution_arn, on_tick=progress.update)
    if outcome.status != "SUCCEEDED":
        if names_model_access(outcome.error_message):
            raise AwsSetupError(model_access_fix(args.model_id, getattr(target, "region", None)))
        code = EXIT_BAD_INPUT if outcome.error == "InputValidationError" else EXIT_FAILED
        return fail(outcome.error_message, code)
    run_id = target.run_id(execution_arn)
    files = target.download_outputs(run_id, args.output)
    summary = json.loads((args.output / "summary.json").read_text())
    if summary["succeeded"] == 0 and denied_model_access(summary):  # every row failed for want of model access
        raise AwsSetupError(model_access_fix(args.model_id, getattr(target, "region", None)))
    retry_jobs = (summary.get("resubmission") or {}).get("jobs_planned", 0)
    print(
        f"run {run_id}: {summary['total_records']} rows in {summary['jobs_planned']} jobs"
        + (f" + {retry_jobs} resubmission jobs" if retry_jobs else "")
        + f" -> {summary['message']} (input tokens {summary['input_tokens']}, output tokens {summary['output_tokens']})"
    )
    cost = summary.get("estimated_cost") or {}
    if cost:  # "estimated cost $0.0123 at batch prices (...)" or "no price for model X: add it to prices.json ..."
        print(cost["message"])
    print(f"output: {len(files) - 1} Parquet file(s) and summary.json in {args.output.resolve()}")
    return EXIT_OK
