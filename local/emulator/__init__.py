"""Bedrock emulator: the real wire protocol, strict like the service, on localhost.

Public API: ``EmulatorState`` (jobs, clock, speed, quotas, faults), ``BedrockEmulator`` (the HTTP server),
``ManualClock``, ``Quotas``, ``serve``/``standalone`` (on its own, with a moto S3 server), ``RuntimeState`` (the
``bedrock-runtime`` operations, ``BedrockEmulator.runtime``). Injectable faults and the ``--faults`` spec:
``local.emulator.faults``. The models batch jobs may use, and their limits: ``local.emulator.batch_models``.
"""

from local.emulator.batch_io import Quotas
from local.emulator.jobs import EmulatorState, ManualClock
from local.emulator.runtime import RuntimeState
from local.emulator.server import BedrockEmulator
from local.emulator.standalone import serve, standalone

__all__ = ["BedrockEmulator", "EmulatorState", "ManualClock", "Quotas", "RuntimeState", "serve", "standalone"]
