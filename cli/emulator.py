"""``python -m cli emulator``: the Bedrock emulator alone, for any boto3 client (``endpoint_url``)."""

from __future__ import annotations

import argparse
from typing import Any

from cli.batch import EXIT_BAD_INPUT, FAULTS_HELP, fail


def add_parser(commands: Any) -> None:
    p = commands.add_parser("emulator", help="serve the Bedrock emulator (and a moto S3 beside it)")
    p.add_argument("--port", type=int, default=8090, help="emulator port (default 8090)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--s3-port", type=int, default=5000, help="port of the moto S3 server started beside it")
    p.add_argument("--s3-endpoint-url", help="use this S3 endpoint instead of starting moto")
    p.add_argument("--step-seconds", type=float, default=5.0, help="how long each job status lasts")
    p.add_argument("--faults", default="", metavar="SPEC", help=FAULTS_HELP)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from local.emulator.faults import FaultSpecError, parse_faults
    from local.emulator.standalone import serve

    try:
        faults = parse_faults(args.faults)
    except FaultSpecError as exc:
        return fail(f"--faults: {exc}", EXIT_BAD_INPUT)
    serve(
        args.port,
        host=args.host,
        s3_port=args.s3_port,
        s3_endpoint_url=args.s3_endpoint_url,
        step_seconds=args.step_seconds,
        faults=faults,
    )
    return 0
