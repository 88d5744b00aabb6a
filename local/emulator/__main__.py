"""``python -m local.emulator [--port N] [--s3-port N] [--step-seconds S] [--faults SPEC]``"""

from __future__ import annotations

import argparse

from local.emulator.faults import EXAMPLE, FAULTS, FaultSpecError, parse_faults
from local.emulator.standalone import serve


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m local.emulator", description="Serve the Bedrock emulator.")
    parser.add_argument("--port", type=int, default=8090, help="emulator port (default 8090)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--s3-port", type=int, default=5000, help="port of the moto S3 server started beside it")
    parser.add_argument("--s3-endpoint-url", help="use this S3 endpoint instead of starting moto")
    parser.add_argument("--step-seconds", type=float, default=5.0, help="how long each job status lasts")
    parser.add_argument(
        "--faults", default="", metavar="SPEC", help=f"name=value,... e.g. {EXAMPLE}; names: {', '.join(FAULTS)}"
    )
    args = parser.parse_args(argv)
    try:
        faults = parse_faults(args.faults)
    except FaultSpecError as error:
        parser.exit(2, f"error: --faults: {error}\n")
    serve(
        args.port,
        host=args.host,
        s3_port=args.s3_port,
        s3_endpoint_url=args.s3_endpoint_url,
        step_seconds=args.step_seconds,
        faults=faults,
    )


if __name__ == "__main__":
    main()
