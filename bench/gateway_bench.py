"""Gateway benchmark (issue 5 item 11): streaming latency through the gateway vs ConverseStream straight to the
same emulator, the concurrent streams one gateway process holds, the app's cold import time and the Lambda zip size.

The gateway and the emulator run in child processes (``python -m bench.gateway_bench serve ...``; by default one
each, see BENCH_GATEWAY_TOPOLOGY), so the load generator in this process shares a GIL with neither. Both the
baseline (aiobotocore ``converse_stream`` on the emulator's URL, its events read with the gateway's
``converse_events``, aiobotocore's events at less CPU a frame) and the gateway (``/v1/chat/completions`` with
``stream: true`` through aiohttp) send the same prompt to the same emulator. TTFT = time to the first text delta
(``contentBlockDelta`` / a chunk with ``delta.content``); total = time to the end of the stream.

Cores (``placement``): the gateway's process runs on one core of its own, as a Fargate task of 1 vCPU has one, and
the emulator and this load generator on the machine's other cores (on AWS, Bedrock and the clients run on other
machines), for the direct and the gateway runs alike, so the difference is the gateway's. Each run records the
machine's load average and, pinned, how busy the gateway's core was and how much of that was other processes (on a
shared machine they run there too, and the gateway waits for them). Nothing is pinned on a machine (or a
``taskset``) of one core, in the ``shared`` topology, or with BENCH_GATEWAY_PIN=0; the report says which.

The gateway's process runs as the deployed function does: the function's POWERTOOLS_* variables (log level INFO,
metrics on, its service and namespace, read from the synthesized template), uvicorn logging each request as the
function's ``python -m uvicorn`` does; what it prints (JSON logs, one EMF record per answer, access lines) goes to a
file, counted in the report. Every case reports the gateway's CPU per streamed answer and per text frame (user +
system time of its process over the run: less sensitive to a shared machine than wall time) and the cores the
gateway, the emulator and the load generator each kept busy.

Cases: ``@1``, one stream at a time; ``@100``, 100 streams open at once, as a busy service has them: the emulator
paces its text frames (BENCH_GATEWAY_PACE seconds apart, default 0.02 s: 50 frames/s, about a fast model's stream;
it sends every paced stream from one thread, ``local.emulator.server``)
and the 100 clients start at random moments within one stream's length, then each opens its next stream when its
last one ends - this is the case the 5/20 ms targets apply to; ``@100 burst``, 100 unpaced streams started at the same
instant, over and over: no service sees this, it measures how the CPU each answer costs queues (reported, not held
to the targets). Answers in these cases are 90 frames (``PROMPT``, ~2 s paced).

``@500 x 20 s`` is the workload issue 11 states for one Fargate task of 1 vCPU and holds to an added TTFT p50 under
10 ms: 500 streams open in the one process, each a 20-second answer (``LONG_PROMPT``, 1,000 words: the emulator
echoes the prompt one word per text frame, so 1,000 frames 0.02 s apart; the bot's default ``max_tokens`` of 1,024
keeps the echo whole), starts spread over one answer's length, so ~25 answers start a second and 25,000 frames a
second leave the gateway. ``@500 x 2 s (stress)`` is the same 500 streams of the 90-frame answers: the same frames
a second but ten times the answers (~250 a second), so each answer's own CPU (the request, its log line and EMF
record) counts ten times as much; reported, not held to the target.

In the paced cases (``@100``, ``@500 ...``) only the answers that started once every client had started are measured
(the ones before it see fewer streams open): BENCH_GATEWAY_REQUESTS such answers, the ramp's answers on top. The
gateway's CPU is measured over the whole run and divided by every answer (and every text frame) the run streamed: the
report shows both per answer and per frame. To profile, attach py-spy to the pid the bench prints
(``py-spy record --pid <pid> --format raw -o profile.txt``).

Environment: BENCH_GATEWAY_REQUESTS (measured answers per case, a quarter of it at @1; default 1000: p99 is the 10th
slowest), BENCH_GATEWAY_PACE, BENCH_GATEWAY_MAX_STREAMS (ramp cap, default 1000), BENCH_GATEWAY_STREAM_DELAY
(seconds between text frames during the ramp, default 0.05), BENCH_GATEWAY_SKIP_ZIP=1 (do not pip-install the Lambda
asset),
BENCH_GATEWAY_TOPOLOGY (``split``, default: the emulator and the gateway in two processes, so the gateway process holds
only the gateway as in Lambda; ``shared``: both in the one process ``local_gateway`` runs), BENCH_GATEWAY_PIN (``0``:
pin no process to a core; default ``1``), BENCH_GATEWAY_NICE (a scheduling priority for the load generator, the
gateway and the emulator while the cases run, e.g. ``-10`` on a shared machine, where other work otherwise takes the
gateway's core too; negative values need root; default: unchanged), BENCH_GATEWAY_CASES
(comma-separated case names of ``CASES`` and ``ramp``, e.g. ``500 x 20 s,500 x 2 s (stress)``: run only those, for a
short measurement; a case not run is "not measured" in the report), GATEWAY_STREAM_INTERVAL_MS (the gateway's read
pacing, ``lambdas.gateway.pacing``; default: the Fargate task's, ``gatewayStreamIntervalMs``'s default, as every case
is one process serving many streams, a task's shape; ``0`` to compare with pacing off), BENCH_GATEWAY_PHASES (``1``:
the gateway's time to first token split into steps, timed in its process, ``bench.gateway_phases``; default off).

TLS (BENCH_GATEWAY_TLS, default ``1``): the emulator serves HTTPS, as Bedrock does, on a throwaway self-signed
certificate made at the bench's start (``local.emulator.tls``); the gateway's process trusts it through
``AWS_CA_BUNDLE`` (what botocore and aiobotocore read for ``verify``), the direct baseline's client through
``verify=``, with certificate checks on, so both sides of the comparison read and decrypt TLS records as they would
from Bedrock. ``0``: plain HTTP (what the bench measured before; the report says which).

Besides TTFT and total time, each case reports the gaps between the pieces of text a client receives (p50 and p99
over every gap of the measured answers; text within ``ARRIVAL`` of the text before it came in the same read and makes
no gap): read pacing trades them (fewer, longer gaps) for CPU.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import gateway_phases
from bench.timing import percentile
from lambdas.gateway.eventstream import converse_events
from stacks.config.fargate import STREAM_INTERVAL

ROOT = Path(__file__).resolve().parent.parent
BOT = "claude-3-haiku"
MODEL_ID = "anthropic.claude-3-haiku-20240307-v1:0"
SENTENCE = "Streaming answers arrive word by word through the gateway so the first token should come back quickly too"
# 90 words: the emulator echoes it one word per text frame, so an answer is 90 frames, a short real answer
PROMPT = " ".join(SENTENCE for _ in range(5))
# 1,000 words: 1,000 text frames, a 20-second answer at 0.02 s a frame (issue 11 sizes a Fargate task on these)
LONG_PROMPT = " ".join((SENTENCE.split() * 56)[:1000])
TARGETS = {
    "added_ttft_p50_ms": 5.0,
    "added_ttft_p99_ms": 20.0,
    "added_ttft_p50_ms_at_500": 10.0,  # 500 open streams of 20 s answers in one process (a Fargate task of 1 vCPU)
    "streams": 500,
    "import_s": 1.0,
    "zip_mb": 30.0,
}

# The target case of 500 streams (issue 11: 20-second answers) and the stress case of the same streams, 2 s each
AT_500 = "500 x 20 s"
AT_500_STRESS = "500 x 2 s (stress)"
CASES = ("1", "100", "100 burst", AT_500, AT_500_STRESS)

# (ttft seconds, total seconds, text frames received, the gaps between text arrivals in seconds: text that came
# within ARRIVAL of the text before it arrived with it, in one read, and makes no gap)
Timing = tuple[float, float, int, list[float]]
ARRIVAL = 0.001


class Arrivals:
    """When one answer's pieces of text reached the client: the count, the first, and the gaps between them."""

    def __init__(self, started: float) -> None:
        self.started, self.frames, self.last = started, 0, 0.0
        self.first: float | None = None
        self.gaps: list[float] = []

    def text(self) -> None:
        """A piece of text arrived now."""
        now = time.perf_counter()
        self.frames += 1
        if self.first is None:
            self.first = now
        elif now - self.last >= ARRIVAL:
            self.gaps.append(now - self.last)
        self.last = now

    def timing(self, missing: str) -> Timing:
        """The answer's ``Timing``, now that it ended; ``missing`` is the error when no text came."""
        end = time.perf_counter()
        if self.first is None:
            raise RuntimeError(missing)
        return self.first - self.started, end - self.started, self.frames, self.gaps


_CONTENT, _EMPTY = b'"content": "', b'"content": ""'  # as the gateway's chunks spell them (json.dumps)


# ------------------------------------------------------------------ core placement


@dataclass(frozen=True)
class Placement:
    """The cores each process of the bench may run on: ``gateway`` for the gateway's process, ``others`` for the
    emulator's and the load generator's (this process); both None when nothing is pinned. ``note`` says which.

    During a direct run the gateway idles, and the load generator moves to its core (``generator``): there it reads
    Bedrock's events itself, unpaced, without taking the emulator's core, so the baseline is the emulator's best.
    Left beside the emulator, its reading (up to half a core at 500 streams) delayed the emulator's answers in the
    direct run more than in the gateway run, whose writes come grouped: the baseline then moved by 25 ms between
    identical runs and the gateway often looked faster than direct access. Now the comparison can only be unfair to
    the gateway (in its run the load generator shares the emulator's core)."""

    gateway: frozenset[int] | None
    others: frozenset[int] | None
    note: str

    def generator(self, variant: str) -> frozenset[int] | None:
        """The load generator's cores for a run of ``variant`` (``direct`` or ``gateway``); None: not pinned."""
        return self.gateway if variant == "direct" else self.others


def placement(available: Iterable[int], topology: str = "split", enabled: bool = True) -> Placement:
    """One core of its own for the gateway's process, as a task of 1 vCPU has, and the rest for the emulator and the
    load generator, which on AWS run elsewhere (Bedrock, the clients). The direct baseline runs with the same
    placement, so the difference is the gateway's. Nothing is pinned on one core, in the ``shared`` topology (the
    emulator runs in the gateway's process) or when pinning is off (BENCH_GATEWAY_PIN=0)."""
    cores = sorted(set(available))
    if not enabled:
        reason = "BENCH_GATEWAY_PIN=0"
    elif topology != "split":
        reason = "the shared topology runs the emulator in the gateway's process"
    elif len(cores) < 2:
        reason = f"{len(cores)} core available to the bench"
    else:
        gateway, others = cores[-1], cores[:-1]
        return Placement(
            frozenset({gateway}),
            frozenset(others),
            f"the gateway's process pinned to core {gateway} (one core, as a task of 1 vCPU has); the emulator and "
            f"the load generator to core(s) {', '.join(map(str, others))}; in the direct runs the load generator "
            f"takes the idle gateway's core {gateway} instead (the baseline at its best)",
        )
    note = f"not pinned ({reason}): the gateway, the emulator and the load generator share {len(cores)} core(s)"
    return Placement(None, None, note)


def pin(pid: int, cores: Iterable[int]) -> None:
    """Every thread of process ``pid`` on ``cores`` (Linux keeps an affinity per thread; threads started later
    inherit their creator's)."""
    cpus = set(cores)
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            os.sched_setaffinity(int(task.name), cpus)
        except ProcessLookupError:  # the thread has ended
            continue


def set_nice(pid: int, nice: int) -> None:
    """Every thread of process ``pid`` at scheduling priority ``nice`` (children and threads started later inherit
    it), and its session's autogroup too where Linux groups sessions (``sched_autogroup_enabled``: a thread's nice
    then only weighs against its own session's threads). Below 0 needs the privilege to raise a priority (root, or
    CAP_SYS_NICE)."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            os.setpriority(os.PRIO_PROCESS, int(task.name), nice)
        except ProcessLookupError:  # the thread has ended
            continue
    autogroup = Path(f"/proc/{pid}/autogroup")
    if autogroup.exists():
        autogroup.write_text(str(nice))


def autogroup_nice(pid: int) -> int | None:
    """The nice of process ``pid``'s autogroup (``/autogroup-48 nice 0``), None without autogroups."""
    autogroup = Path(f"/proc/{pid}/autogroup")
    return int(autogroup.read_text().split()[-1]) if autogroup.exists() else None


def core_busy_seconds(cores: Iterable[int], stat: str | None = None) -> float:
    """CPU time spent on ``cores`` since boot by everything (every process, the kernel): /proc/stat's user to steal
    columns less idle and iowait. ``stat``: that file's text (read now if None)."""
    wanted = {f"cpu{core}" for core in cores}
    ticks = 0
    for line in (Path("/proc/stat").read_text() if stat is None else stat).splitlines():
        name, *fields = line.split()
        if name in wanted:
            values = [int(value) for value in fields[:8]]  # guest time is already in user
            ticks += sum(values) - values[3] - values[4]
    return ticks / os.sysconf("SC_CLK_TCK")


def io_calls(pid: int, io: str | None = None) -> tuple[int, int]:
    """The read and write system calls ``pid`` made so far (/proc/<pid>/io ``syscr``, ``syscw``: read(2), write(2)
    and their vector forms, sockets included, which is how libuv reads and writes a TCP stream). ``io``: that file's
    text (read now if None)."""
    fields = dict(line.split(": ", 1) for line in (io or Path(f"/proc/{pid}/io").read_text()).splitlines() if line)
    return int(fields["syscr"]), int(fields["syscw"])


def _cores(value: str) -> frozenset[int]:
    return frozenset(int(core) for core in value.split(","))


def _cores_env(cores: frozenset[int] | None) -> dict[str, str]:
    """The variable that pins a ``serve`` child (read before it starts any thread), if any."""
    return {} if cores is None else {"BENCH_GATEWAY_CORES": ",".join(map(str, sorted(cores)))}


# ------------------------------------------------------------------ the server process


def serve(role: str, emulator_url: str = "") -> None:
    """Child process. ``shared``: ``local_gateway`` with its emulator in the same process; ``emulator``: the emulator
    alone; ``gateway``: the gateway alone (``target="aws"``) on ``emulator_url``. Prints its endpoints as one JSON
    line; stdin lines ``delay <seconds>`` set the emulator's delay between text frames; EOF stops it.

    The gateway runs as deployed: the parent passes the function's POWERTOOLS_* variables (``deployed_environment``),
    uvicorn logs at ``info`` as the function's ``python -m uvicorn`` does, and what the process prints (JSON logs, EMF
    metrics, access lines) goes to BENCH_GATEWAY_OUTPUT, a file, as Lambda takes a function's stdout and stderr. Only
    the emulator, the test double, stays quiet (WARNING, metrics off). BENCH_GATEWAY_CORES (set by ``Server``
    from the ``Placement``): the cores this process runs on, set before it starts any thread."""
    cores = os.environ.get("BENCH_GATEWAY_CORES")
    tls_files = os.environ.get("BENCH_GATEWAY_TLS_FILES")  # "cert,key": the emulator serves HTTPS on them
    if cores:
        pin(os.getpid(), _cores(cores))
    nice = int(os.environ.get("BENCH_GATEWAY_NICE", "0"))
    if nice:
        set_nice(os.getpid(), nice)
    control = sys.stdout
    output = os.environ.get("BENCH_GATEWAY_OUTPUT")
    if output and role != "emulator":
        control = os.fdopen(os.dup(1), "w")  # the parent reads the endpoints and "ok"s here
        sink = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(sink, 1)
        os.dup2(sink, 2)
        os.close(sink)
    if role == "emulator":
        os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
        os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
    elif os.environ.get("BENCH_GATEWAY_PHASES") == "1":
        gateway_phases.install()  # the TTFT's steps timed in this process (bench.gateway_phases)
    from cli.gateway import FAKE_AWS_ENV, local_gateway

    for name, value in FAKE_AWS_ENV.items():
        os.environ.setdefault(name, value)
    os.environ.setdefault("GATEWAY_ACCOUNT_ID", "123456789012")  # the emulator's account: no STS call for it
    # The emulator's ThreadingHTTPServer listens with the stdlib's backlog of 5: 100 connections opened at once lose
    # SYNs and wait a 1 s retransmit, which is the test double's limit, not the gateway's. Both paths get a deep one.
    importlib.import_module("local.emulator.server")._Server.request_queue_size = 1024
    standalone_module = importlib.import_module("local.emulator.standalone")  # the package re-exports standalone()
    emulators: list[Any] = []
    original = standalone_module.standalone

    @contextmanager
    def capturing(*args: Any, **kwargs: Any) -> Iterator[Any]:
        if tls_files:
            from local.emulator.tls import server_context

            kwargs["tls"] = server_context(*map(Path, tls_files.split(",")))
        with original(*args, **kwargs) as emulator:
            emulators.append(emulator)
            yield emulator

    setattr(standalone_module, "standalone", capturing)  # noqa: B010 - to reach the emulator's stream knobs
    with ExitStack() as stack:
        if role == "emulator":
            emulator = stack.enter_context(capturing(0, s3_port=0, step_seconds=1))
            info = {"emulator": emulator.endpoint_url}
        else:
            if role == "gateway":
                os.environ["AWS_ENDPOINT_URL_BEDROCK_RUNTIME"] = emulator_url
                # The baseline's aiobotocore client waits up to 60 s for a connection (botocore's default); the
                # gateway's 5 s is meant for Bedrock, and the emulator's one accept thread under 1,000 new streams
                # at once can take longer: both get 60 s, so the ramp measures the gateway, not the test double.
                os.environ.setdefault("GATEWAY_CONNECT_TIMEOUT", "60")
            target = "local" if role == "shared" else "aws"
            running = stack.enter_context(local_gateway(port=0, target=target, log_level="info"))
            info = {"url": running.url, "key": running.access_key, "emulator": running.emulator_url or emulator_url}
        print(json.dumps(info | {"pid": os.getpid()}), file=control, flush=True)
        for line in sys.stdin:
            command, _, value = line.strip().partition(" ")
            if command == "delay" and emulators:
                emulators[0].runtime.stream_delay_seconds = float(value)
            if command == "phases":  # the TTFT steps recorded since the last ask (BENCH_GATEWAY_PHASES=1)
                print(json.dumps(gateway_phases.take()), file=control, flush=True)
                continue
            print("ok", file=control, flush=True)


def deployed_environment() -> dict[str, str]:
    """The POWERTOOLS_* variables of the gateway function as the app synthesizes it (service name, metrics namespace,
    log level), read from the template in a child interpreter (bundling skipped) so that this load generator does not
    keep the CDK's runtime."""
    code = """
import json, tempfile
from stacks.synth import build_app, gateway_stack
with tempfile.TemporaryDirectory() as out:
    app, _ = build_app(skip_bundling=True, outdir=out, gateway=True)
    stack = gateway_stack(app)
    template = app.synth().get_stack_by_name(stack.stack_name).template
    function = template["Resources"][stack.get_logical_id(stack.gateway.function.function.node.default_child)]
    print(json.dumps(function["Properties"]["Environment"]["Variables"]))
"""
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, capture_output=True, text=True)
    variables = json.loads(done.stdout.strip().splitlines()[-1])
    return {name: value for name, value in variables.items() if name.startswith("POWERTOOLS_")}


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _child(*args: str, env: dict[str, str] | None = None) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    nice = int(os.environ.get("BENCH_GATEWAY_NICE", "0"))
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.gateway_bench", "serve", *args],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=None if env is None else os.environ | env,
        start_new_session=bool(nice),  # an autogroup of its own, given the priority in ``serve``
    )
    assert process.stdout is not None
    return process, json.loads(process.stdout.readline())


class Server:
    """``split`` (default): the emulator and the gateway in two processes; ``shared``: as ``local_gateway`` runs them,
    in one (the emulator then competes with the gateway for its GIL)."""

    def __init__(
        self,
        topology: str,
        environment: dict[str, str],
        output: Path,
        cores: Placement | None = None,
        tls: tuple[Path, Path] | None = None,
    ) -> None:
        """``environment``: the deployed function's variables, for the gateway's process; ``output``: the file that
        process prints to (logs, EMF); ``cores``: where the gateway's and the emulator's processes run (default:
        anywhere); ``tls``: the emulator's certificate and key (HTTPS), which the gateway trusts (``AWS_CA_BUNDLE``)."""
        cores = cores or Placement(None, None, "not pinned")
        self.processes: list[subprocess.Popen[str]] = []
        self.output = output
        self.ca_bundle = None if tls is None else tls[0]
        tls_env = {} if tls is None else {"BENCH_GATEWAY_TLS_FILES": f"{tls[0]},{tls[1]}", "AWS_CA_BUNDLE": str(tls[0])}
        gateway_env = environment | {"BENCH_GATEWAY_OUTPUT": str(output)} | _cores_env(cores.gateway) | tls_env
        if topology == "split":
            emulator, info = _child("emulator", env=_cores_env(cores.others) | tls_env)
            self.processes.append(emulator)
            gateway, gateway_info = _child("gateway", info["emulator"], env=gateway_env)
            self.processes.append(gateway)
            info |= gateway_info
        else:
            shared, info = _child("shared", env=gateway_env)
            self.processes.append(shared)
        self.knobs = self.processes[0]
        self.cores = cores
        self.url, self.key, self.emulator = info["url"], info["key"], info["emulator"]
        self.gateway_pid = info["pid"]  # for a profiler: py-spy record --pid <pid> (see the module's docstring)

    def output_counts(self) -> dict[str, int]:
        """Lines the gateway's process printed so far: all, EMF records, Powertools JSON log lines."""
        lines = emf = logs = 0
        with self.output.open("rb") as printed:
            for line in printed:
                lines += 1
                emf += b'"_aws"' in line
                logs += line.startswith(b'{"level"')
        return {"lines": lines, "emf_records": emf, "json_logs": logs}

    def gateway_cpu_seconds(self) -> float:
        """User + system CPU of the gateway's process so far (the last child: the gateway, or the shared one)."""
        return _cpu_seconds(self.processes[-1].pid)

    def gateway_io_calls(self) -> tuple[int, int]:
        """Read and write system calls of the gateway's process so far (``io_calls``)."""
        return io_calls(self.processes[-1].pid)

    def emulator_cpu_seconds(self) -> float | None:
        """User + system CPU of the emulator's own process so far; None when it shares the gateway's."""
        return _cpu_seconds(self.processes[0].pid) if len(self.processes) > 1 else None

    def delay(self, seconds: float) -> None:
        assert self.knobs.stdin is not None and self.knobs.stdout is not None
        self.knobs.stdin.write(f"delay {seconds}\n")
        self.knobs.stdin.flush()
        self.knobs.stdout.readline()

    def phases(self) -> dict[str, Any]:
        """The gateway process's TTFT steps (``records``) and its event loop's lateness samples (``lags``) since the
        last call (``bench.gateway_phases``; none unless BENCH_GATEWAY_PHASES=1)."""
        gateway = self.processes[-1]
        assert gateway.stdin is not None and gateway.stdout is not None
        gateway.stdin.write("phases\n")
        gateway.stdin.flush()
        taken: dict[str, Any] = json.loads(gateway.stdout.readline())
        return taken

    def close(self) -> None:
        for process in reversed(self.processes):
            assert process.stdin is not None
            process.stdin.close()
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


# ------------------------------------------------------------------ clients


class Direct:
    """aiobotocore ``converse_stream`` straight to the emulator. The events are read with the gateway's
    ``converse_events`` (the events aiobotocore's own iteration yields, its text deltas parsed without botocore's
    generic parser): at 500 streams this process reads 25,000 frames a second for 500 clients that would be 500
    machines, and the baseline should not wait on its own load generator more than the gateway's aiohttp client
    does."""

    def __init__(self, endpoint: str, connections: int, ca_bundle: Path | None = None) -> None:
        self.endpoint, self.connections, self.ca_bundle = endpoint, connections, ca_bundle
        self.client: Any = None
        self.calls: list[tuple[float, float]] = []  # (sent, converse_stream returned): its time, for the phases

    async def __aenter__(self) -> Direct:
        from aiobotocore.config import AioConfig
        from aiobotocore.session import get_session

        config = AioConfig(max_pool_connections=self.connections, retries={"max_attempts": 1}, read_timeout=120)
        self._context = get_session().create_client(
            "bedrock-runtime",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            config=config,
            verify=None if self.ca_bundle is None else str(self.ca_bundle),  # the emulator's certificate over TLS
        )
        self.client = await self._context.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._context.__aexit__(*exc)

    async def stream(self, prompt: str = PROMPT) -> Timing:
        arrivals = Arrivals(time.perf_counter())
        response = await self.client.converse_stream(
            modelId=MODEL_ID, messages=[{"role": "user", "content": [{"text": prompt}]}]
        )
        self.calls.append((arrivals.started, time.perf_counter()))
        async for event in converse_events(response["stream"]):
            if event.get("contentBlockDelta", {}).get("delta", {}).get("text"):
                arrivals.text()
        return arrivals.timing("no text delta")


class Gateway:
    """aiohttp streaming ``/v1/chat/completions`` with ``stream: true`` through the gateway.

    aiohttp, not httpx: with 100 streams httpx's async client used a whole core in this process (1.3 s CPU for 1.5 s
    of wall time) and so timed itself; aiohttp is also what aiobotocore, the baseline's client, runs on."""

    answers = 0  # streamed answers through the gateway, all instances (the bench's count of what it printed)

    def __init__(self, url: str, key: str, connections: int) -> None:
        self.url, self.key, self.connections = url, key, connections

    async def __aenter__(self) -> Gateway:
        import aiohttp

        self.session = aiohttp.ClientSession(
            base_url=self.url,
            # aiohttp keeps an idle connection 15 s, uvicorn 5 s (its timeout_keep_alive): a request sent on one the
            # gateway has just closed fails (reset, server disconnected). A busy load generator idles that long
            # between the warm-up and a worker's first stream; 4 s keeps the client the one that closes first.
            connector=aiohttp.TCPConnector(limit=self.connections, keepalive_timeout=4),
            timeout=aiohttp.ClientTimeout(total=None, sock_read=120),
            headers={"Authorization": f"Bearer {self.key}"},
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.session.close()

    async def stream(self, prompt: str = PROMPT) -> Timing:
        body = {"model": BOT, "stream": True, "messages": [{"role": "user", "content": prompt}]}
        arrivals, done = Arrivals(time.perf_counter()), False
        sent = {"x-bench-sent": repr(arrivals.started)}  # the gateway's process times its steps from it (phases)
        async with self.session.post("/v1/chat/completions", json=body, headers=sent) as response:
            if response.status != 200:
                raise RuntimeError(f"HTTP {response.status}: {(await response.read())[:200]!r}")
            async for raw in response.content:
                if not raw.startswith(b"data: "):
                    continue
                data = raw[6:].strip()
                if data == b"[DONE]":
                    done = True
                    continue
                if arrivals.first is not None and _CONTENT in data and _EMPTY not in data and b'"error"' not in data:
                    arrivals.text()  # a text chunk after the first, counted without parsing 25,000 of them a second
                    continue  # (the prompts hold no quote); anything else is parsed and checked
                chunk = json.loads(data)
                if "error" in chunk:
                    raise RuntimeError(f"stream error: {chunk['error']}")
                if any(c.get("delta", {}).get("content") for c in chunk.get("choices", [])):
                    arrivals.text()
        timing = arrivals.timing("no content delta")
        if not done:
            raise RuntimeError("no [DONE]")
        Gateway.answers += 1
        return timing


# ------------------------------------------------------------------ measurements


async def load(
    stream: Callable[[], Awaitable[Timing]], requests: int, concurrency: int, stagger: float = 0.0
) -> dict[str, Any]:
    """``requests`` measured streams from ``concurrency`` workers, each starting its next stream when its last one
    ends; latencies in ms. ``stagger``: each worker first waits a random part of that many seconds, so that the
    streams overlap as a service's do (starts spread over time) instead of starting in lockstep; then only the
    streams started once every worker has started are measured (the ones before see fewer streams open), and the
    ramp's streams run on top of ``requests``. ``open_at_start_mean``: the streams open when each measured one
    started (the concurrency the gateway really saw); ``answers`` and ``frames``: every stream of the run and the
    text frames they received, ramp included (what the gateway's CPU over the run served)."""
    errors: list[str] = []
    remaining = requests
    in_flight = 0
    open_at_start: list[int] = []
    answers = frames = 0
    rng = random.Random(7)
    started = time.perf_counter()
    steady_from = started + stagger

    async def worker(first_wait: float) -> list[Timing]:
        nonlocal remaining, in_flight, answers, frames
        await asyncio.sleep(first_wait)
        done: list[Timing] = []
        while remaining > 0:
            measured = time.perf_counter() >= steady_from
            if measured:
                remaining -= 1
                open_at_start.append(in_flight)
            in_flight += 1
            try:
                timing = await stream()
                answers, frames = answers + 1, frames + timing[2]
                if measured:
                    done.append(timing)
            except Exception as error:  # noqa: BLE001 - counted and reported
                errors.append(f"{type(error).__name__}: {error}"[:200])
            finally:
                in_flight -= 1
        return done

    waits = [rng.uniform(0, stagger) if stagger else 0.0 for _ in range(concurrency)]
    results = [r for batch in await asyncio.gather(*(worker(w) for w in waits)) for r in batch]
    wall = time.perf_counter() - started
    ttft = [r[0] * 1000 for r in results]
    total = [r[1] * 1000 for r in results]
    gaps = [gap * 1000 for r in results for gap in r[3]]
    summary: dict[str, Any] = {"requests": requests, "concurrency": concurrency, "errors": len(errors), "wall_s": wall}
    summary["open_at_start_mean"] = sum(open_at_start) / max(1, len(open_at_start))
    summary |= {"answers": answers, "frames": frames, "frames_per_answer": frames / max(1, answers)}
    if results:
        summary |= {
            "ttft_p50_ms": percentile(ttft, 50),
            "ttft_p99_ms": percentile(ttft, 99),
            "total_p50_ms": percentile(total, 50),
            "total_p99_ms": percentile(total, 99),
        }
    if gaps:  # what a client sees between pieces of text (read pacing groups them: fewer, longer gaps)
        summary |= {"gap_p50_ms": percentile(gaps, 50), "gap_p99_ms": percentile(gaps, 99), "gaps": len(gaps)}
    if errors:
        summary["first_errors"] = sorted(set(errors))[:3]
    return summary


async def latency(
    server: Server, concurrency: int, requests: int, pace: float = 0.0, stagger: float = 0.0, prompt: str = PROMPT
) -> dict[str, dict[str, Any]]:
    """Best of BENCH_REPEAT runs (lowest p50 TTFT) per variant, each after a warm-up, with ``pace`` seconds between
    the emulator's text frames and ``prompt`` echoed one word a frame. Also the CPU the gateway process spent per
    streamed answer and per text frame (its user + system time over the run, over every answer and frame of it)."""
    repeat = max(1, int(os.environ.get("BENCH_REPEAT", "2")))
    phased = os.environ.get("BENCH_GATEWAY_PHASES") == "1"
    out: dict[str, dict[str, Any]] = {}
    variants: dict[str, Callable[[], Direct | Gateway]] = {
        "direct": lambda: Direct(server.emulator, concurrency, server.ca_bundle),
        "gateway": lambda: Gateway(server.url, server.key, concurrency),
    }
    server.delay(pace)
    try:
        for name, make in variants.items():
            generator = server.cores.generator(name)
            if generator is not None:
                pin(os.getpid(), generator)
            async with make() as client:
                # warm-up (connections, imports, caches) with the short answer: a long one would only take longer
                await load(client.stream, concurrency, concurrency)
                runs = []
                for _ in range(repeat):
                    cpu_before, io_before = server.gateway_cpu_seconds(), server.gateway_io_calls()
                    pinned = server.cores.gateway
                    core_before = None if pinned is None else core_busy_seconds(pinned)
                    emulator_before, generator_before = server.emulator_cpu_seconds(), time.process_time()
                    if phased:
                        server.phases()  # the warm-up's and earlier runs' records dropped
                        if isinstance(client, Direct):
                            client.calls.clear()
                    steady = time.perf_counter() + stagger  # the answers ``load`` measures start from here
                    run = await load(functools.partial(client.stream, prompt), requests, concurrency, stagger)
                    if phased:  # the TTFT's steps (bench.gateway_phases), over the measured answers
                        if isinstance(client, Direct):
                            calls = [(end - sent) * 1000 for sent, end in client.calls if sent >= steady]
                            if calls:
                                call = {"p50_ms": percentile(calls, 50), "p99_ms": percentile(calls, 99)}
                                run["phases"] = {"answers": len(calls), "converse_stream": call}
                        else:
                            taken = server.phases()
                            run["phases"] = gateway_phases.summary(taken["records"], steady, taken["lags"])
                    cpu_ms = (server.gateway_cpu_seconds() - cpu_before) * 1000
                    run["gateway_cpu_ms_per_answer"] = cpu_ms / max(1, run["answers"])
                    run["gateway_cpu_us_per_frame"] = cpu_ms * 1000 / max(1, run["frames"])
                    # the gateway's read and write system calls a text frame: what read pacing groups, whatever the
                    # machine's load (over TLS the socket's reads, which pausing the SSL transport alone left as many)
                    io_after = server.gateway_io_calls()
                    reads, writes = io_after[0] - io_before[0], io_after[1] - io_before[1]
                    run["gateway_reads_per_frame"] = reads / max(1, run["frames"])
                    run["gateway_writes_per_frame"] = writes / max(1, run["frames"])
                    # the cores each process kept busy over the run: three processes share this machine's cores, and
                    # a run whose emulator and load generator need most of them measures a starved gateway
                    emulator_cpu = server.emulator_cpu_seconds()
                    emulator_used = None if emulator_cpu is None else emulator_cpu - (emulator_before or 0.0)
                    run["cores_busy"] = {
                        "gateway": cpu_ms / 1000 / run["wall_s"],
                        "emulator": None if emulator_used is None else emulator_used / run["wall_s"],
                        "load_generator": (time.process_time() - generator_before) / run["wall_s"],
                        "machine": os.cpu_count(),
                    }
                    run["load_average"] = os.getloadavg()  # the machine's, at the run's end (1, 5, 15 minutes)
                    if pinned is not None and core_before is not None:
                        # the gateway's core is its own only if nothing else ran there: on a shared machine other
                        # processes do, and what they took there the gateway waited for
                        busy = core_busy_seconds(pinned) - core_before
                        run["gateway_core"] = {
                            "busy": busy / run["wall_s"],
                            "others": max(0.0, busy - cpu_ms / 1000) / run["wall_s"],
                        }
                    runs.append(run)
            out[name] = min(runs, key=lambda r: (r["errors"], r.get("ttft_p50_ms", float("inf"))))
    finally:
        server.delay(0.0)
        if server.cores.others is not None:
            pin(os.getpid(), server.cores.others)
    return out


async def ramp(server: Server, levels: list[int], delay: float) -> dict[str, Any]:
    """All N streams at once through the gateway, slowed by ``delay`` per text frame so they overlap."""
    server.delay(delay)
    steps: list[dict[str, Any]] = []
    best, nan = 0, float("nan")
    try:
        for level in levels:
            in_flight = peak = 0

            async with Gateway(server.url, server.key, level) as client:

                async def tracked(client: Gateway = client) -> Timing:
                    nonlocal in_flight, peak
                    in_flight += 1
                    peak = max(peak, in_flight)
                    try:
                        return await client.stream()
                    finally:
                        in_flight -= 1

                result = await load(tracked, level, level)
            result["peak_in_flight"] = peak
            steps.append(result)
            print(
                f"  {level} concurrent streams: {result['errors']} errors, {result['wall_s']:.1f} s, TTFT p50 "
                f"{result.get('ttft_p50_ms', nan):.0f} ms p99 {result.get('ttft_p99_ms', nan):.0f} ms",
                flush=True,
            )
            if result["errors"]:
                break
            best = level
    finally:
        server.delay(0.0)
    return {"stream_delay_s": delay, "max_streams_without_errors": best, "steps": steps}


def import_time() -> float:
    """Best of 3 cold imports of the gateway app, each in a fresh interpreter."""
    code = "import time; t=time.perf_counter(); import lambdas.gateway.app; print(time.perf_counter()-t)"
    times = []
    for _ in range(3):
        done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, capture_output=True, text=True)
        times.append(float(done.stdout.strip().splitlines()[-1]))
    return min(times)


def zip_size() -> dict[str, Any]:
    """The gateway's zip asset as CDK bundles it (PipLocalBundling, requirements-gateway.txt, arm64), deflated."""
    if os.environ.get("BENCH_GATEWAY_SKIP_ZIP"):
        return {"zip_mb": None, "note": "skipped (BENCH_GATEWAY_SKIP_ZIP)"}
    try:
        from stacks.constructs.local_bundling import PipLocalBundling
        from stacks.constructs.model_gateway import REQUIREMENTS, RUN_SCRIPT, SDK_SERVICES
        from stacks.constructs.python_function import PythonFunction

        with tempfile.TemporaryDirectory() as scratch:
            asset = Path(scratch) / "asset"
            asset.mkdir()
            bundler = PipLocalBundling(
                project_root=ROOT,
                requirements=REQUIREMENTS,
                python_version=PythonFunction.RUNTIME.name.removeprefix("python"),
                architecture="arm64",
                bundle_aws_sdk=SDK_SERVICES,  # as ModelGateway bundles it (aiobotocore pins its botocore)
                extra_files=(("run.sh", RUN_SCRIPT),),
            )
            log = Path(scratch) / "pip.log"
            saved = os.dup(2)  # pip's warnings (ignored find-links locations) go to a log, shown only on failure
            try:
                with log.open("w") as sink:
                    sys.stderr.flush()
                    os.dup2(sink.fileno(), 2)
                    bundler.try_bundle(str(asset), image=None)  # type: ignore[arg-type]  # unused locally
            except subprocess.CalledProcessError as error:
                raise OSError(log.read_text()[-300:]) from error
            finally:
                os.dup2(saved, 2)
                os.close(saved)
            archive = Path(scratch) / "gateway.zip"
            with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as out:
                for path in sorted(asset.rglob("*")):
                    if path.is_file():
                        out.write(path, path.relative_to(asset))
            unzipped = sum(p.stat().st_size for p in asset.rglob("*") if p.is_file())
            return {"zip_mb": archive.stat().st_size / 1e6, "unzipped_mb": unzipped / 1e6}
    except (subprocess.CalledProcessError, OSError) as error:
        return {"zip_mb": None, "note": f"not measured: {type(error).__name__}: {error}"[:300]}


# ------------------------------------------------------------------ report


def verdict(ok: bool | None) -> str:
    return {True: "PASS", False: "FAIL", None: "NOT JUDGED"}[ok]


def added_ok(added: float | None, target: float) -> bool | None:
    """An added latency against its target: None (not judged) when it is below minus the target, i.e. the direct
    baseline was that much slower than the gateway: on a machine too busy for the baseline, the machine set the times
    (a negative figure would otherwise pass)."""
    if added is None or added < -target:
        return None
    return added < target


def _judged(name: str, value: float | None, target: float, unit: str = " ms", digits: int = 2) -> str:
    if value is None:
        return f"{name}: not measured"
    ok = added_ok(value, target) if unit == " ms" else value < target
    return f"{name}: {value:.{digits}f}{unit} (target < {target:g}{unit}) {verdict(ok)}"


def print_report(results: dict[str, Any]) -> None:
    nan = float("nan")
    print(
        "\ngateway: streaming through the gateway vs ConverseStream straight to the same emulator "
        f"(topology: {results['topology']}, gateway pool: {results['gateway_max_pool_connections']} connections)"
    )
    if "placement" in results:
        print(f"   (cores: {results['placement']['note']})")
    if "tls" in results:
        how = "HTTPS, as to Bedrock" if results["tls"] else "plain HTTP (BENCH_GATEWAY_TLS=0)"
        print(f"   (the gateway and the direct client talk to the emulator over {how})")
    print(
        f"{'case':<28} {'TTFT p50':>9} {'TTFT p99':>9} {'total p50':>10} {'total p99':>10} {'errors':>7} "
        f"{'gw/direct p50 TTFT':>19} {'open':>5} {'frames':>7} {'gw CPU/answer':>14} {'gw CPU/frame':>13} "
        f"{'gap p50':>8} {'gap p99':>8}"
    )
    for level, pair in results["latency"].items():
        for name in ("direct", "gateway"):
            r = pair[name]
            ratio = pair["gateway"].get("ttft_p50_ms", 0) / max(pair["direct"].get("ttft_p50_ms", 1e-9), 1e-9)
            print(
                f"{name + ' @' + level:<28} {r.get('ttft_p50_ms', nan):>7.2f}ms "
                f"{r.get('ttft_p99_ms', nan):>7.2f}ms {r.get('total_p50_ms', nan):>8.2f}ms "
                f"{r.get('total_p99_ms', nan):>8.2f}ms {r['errors']:>7} "
                f"{ratio if name == 'gateway' else 1.0:>19.2f} {r.get('open_at_start_mean', 0):>5.0f} "
                f"{r.get('frames_per_answer', nan):>7.0f} {r['gateway_cpu_ms_per_answer']:>12.2f}ms "
                f"{r.get('gateway_cpu_us_per_frame', nan):>11.1f}us "
                f"{r.get('gap_p50_ms', nan):>6.1f}ms {r.get('gap_p99_ms', nan):>6.1f}ms"
            )
        print(
            f"{'  added @' + level:<28} {pair['added_ttft_p50_ms']:>7.2f}ms {pair['added_ttft_p99_ms']:>7.2f}ms "
            f"{pair['added_total_p50_ms']:>8.2f}ms {pair['added_total_p99_ms']:>8.2f}ms"
        )
    print(
        f"   (open: streams open when each measured one started, mean; frames: text frames per answer; paced cases: "
        f"frames {results['pace_s']} s apart, starts spread over an answer's length; @100 burst: unpaced and "
        "simultaneous; gw CPU: user + system CPU of the gateway's process over the run, per streamed answer and per "
        "text frame, ~0 on direct rows, where the gateway idles; gap: the time between pieces of text a client "
        f"receives, text within {ARRIVAL * 1000:g} ms of the one before counted as one piece)"
    )
    printed = results["gateway_output"]
    print(
        "   (the gateway ran with the deployed function's logging and metrics and the Fargate task's read pacing, "
        f"{results['gateway_environment']}: it printed {printed['json_logs']} JSON log lines and "
        f"{printed['emf_records']} EMF records, {printed['lines']} lines in all, for {printed['answers']} answers)"
    )
    checks = results["checks"]
    print(
        "=> added TTFT @100 open streams: "
        + _judged("p50", checks["added_ttft_p50_ms"], TARGETS["added_ttft_p50_ms"])
        + "; "
        + _judged("p99", checks["added_ttft_p99_ms"], TARGETS["added_ttft_p99_ms"])
    )
    for name in (AT_500, AT_500_STRESS):
        pair = results["latency"].get(name)
        if pair is None:
            continue
        gateway = pair["gateway"]
        added = pair["added_ttft_p50_ms"]
        target = TARGETS["added_ttft_p50_ms_at_500"]
        held = f"target < {target:g} ms) {verdict(added_ok(added, target))}" if name == AT_500 else "stress, no target)"
        print(
            f"=> added TTFT @{name} (one process, paced): p50 {added:.2f} ms ({held}, {gateway['errors']} errors, "
            f"{gateway.get('open_at_start_mean', 0):.0f} streams open on average, "
            f"{gateway.get('frames_per_answer', nan):.0f} frames an answer; gateway CPU "
            f"{gateway['gateway_cpu_ms_per_answer']:.2f} ms an answer, "
            f"{gateway.get('gateway_cpu_us_per_frame', nan):.1f} us a frame, "
            f"{gateway.get('gateway_reads_per_frame', nan):.2f} read and "
            f"{gateway.get('gateway_writes_per_frame', nan):.2f} write system calls a frame"
        )
        for variant in ("direct", "gateway"):
            busy = pair[variant].get("cores_busy")
            if busy:
                emulator = "shared" if busy["emulator"] is None else f"{busy['emulator']:.2f}"
                load, core = pair[variant].get("load_average"), pair[variant].get("gateway_core")
                print(
                    f"   ({variant} run: cores kept busy by the gateway {busy['gateway']:.2f}, the emulator "
                    f"{emulator}, the load generator {busy['load_generator']:.2f}, of {busy['machine']} here"
                    + ("" if load is None else f"; load average {load[0]:.2f} at its end")
                    + (
                        ""
                        if core is None
                        else f"; the gateway's core busy {core['busy']:.2f}, {core['others']:.2f} of it other processes"
                    )
                    + ")"
                )
    for level, pair in results["latency"].items():
        direct_phases, gateway_phases_ = pair["direct"].get("phases"), pair["gateway"].get("phases")
        if not gateway_phases_:
            continue
        print(f"   (@{level}, the gateway's TTFT in steps, p50 / p99 over {gateway_phases_['answers']} answers:")
        for name, _, _ in gateway_phases.INTERVALS:
            if name in gateway_phases_:
                step = gateway_phases_[name]
                print(f"      {name}: {step['p50_ms']:.2f} / {step['p99_ms']:.2f} ms")
        lateness = gateway_phases_.get(gateway_phases.LATENESS)
        if lateness:
            print(
                f"      {gateway_phases.LATENESS} (a 1-5 ms sleep's, over the run), p50 / p90 / p99: "
                f"{lateness['p50_ms']:.2f} / {lateness['p90_ms']:.2f} / {lateness['p99_ms']:.2f} ms"
            )
        if direct_phases:
            step = direct_phases["converse_stream"]
            print(f"      the direct client's converse_stream: {step['p50_ms']:.2f} / {step['p99_ms']:.2f} ms)")
    ramp_result = results.get("max_streams")
    if ramp_result is None:
        print("=> max concurrent streams: not measured (BENCH_GATEWAY_CASES)")
    else:
        print(
            f"=> max concurrent streams without errors: {ramp_result['max_streams_without_errors']} "
            f"(levels tried {[s['concurrency'] for s in ramp_result['steps']]}, peak in flight "
            f"{max((s['peak_in_flight'] for s in ramp_result['steps']), default=0)}, "
            f"{ramp_result['stream_delay_s']} s between text frames; target >= 500) "
            f"{verdict(ramp_result['max_streams_without_errors'] >= TARGETS['streams'])}"
        )
        at_target = [s for s in ramp_result["steps"] if s["concurrency"] == TARGETS["streams"] and "ttft_p50_ms" in s]
        if at_target:
            step = at_target[0]
            print(
                f"   (zero errors is not zero waiting: the ramp starts all {step['concurrency']} streams at the "
                f"same instant, TTFT p50 {step['ttft_p50_ms']:.0f} ms, p99 {step['ttft_p99_ms']:.0f} ms - the "
                "start-up CPU of that many requests at once queues in one process, as in the @100 burst case)"
            )
    print("=> app import (cold, best of 3): " + _judged("", results["import_s"], TARGETS["import_s"], " s", 3)[2:])
    zip_mb = results["zip"].get("zip_mb")
    if zip_mb is None:
        print(f"=> Lambda zip: {results['zip'].get('note', 'not measured')}")
    else:
        ok = verdict(zip_mb < TARGETS["zip_mb"])
        print(f"=> Lambda zip (arm64, deflated): {zip_mb:.1f} MB (target < 30 MB) {ok}")


def gateway_bench() -> dict[str, Any]:
    requests = int(os.environ.get("BENCH_GATEWAY_REQUESTS", "1000"))
    pace = float(os.environ.get("BENCH_GATEWAY_PACE", "0.02"))
    cap = int(os.environ.get("BENCH_GATEWAY_MAX_STREAMS", "1000"))
    delay = float(os.environ.get("BENCH_GATEWAY_STREAM_DELAY", "0.05"))
    levels = [level for level in (100, 250, 500, 750, 1000) if level <= cap]
    results: dict[str, Any] = {}
    selected = [name.strip() for name in os.environ.get("BENCH_GATEWAY_CASES", ",".join((*CASES, "ramp"))).split(",")]
    unknown = sorted(set(selected) - {*CASES, "ramp"})
    if unknown:
        raise SystemExit(f"BENCH_GATEWAY_CASES: unknown case(s) {unknown}; choose among {[*CASES, 'ramp']}")
    topology = os.environ.get("BENCH_GATEWAY_TOPOLOGY", "split")
    results["topology"] = topology
    cores = placement(os.sched_getaffinity(0), topology, enabled=os.environ.get("BENCH_GATEWAY_PIN", "1") != "0")
    results["placement"] = {
        "gateway": None if cores.gateway is None else sorted(cores.gateway),
        "others": None if cores.others is None else sorted(cores.others),
        "note": cores.note,
    }
    if cores.others is not None:
        pin(os.getpid(), cores.others)  # the load generator, and the children it starts, off the gateway's core
    # BENCH_GATEWAY_NICE (e.g. -10): the scheduler prefers the bench's three processes to other work on a shared
    # machine, which otherwise takes the gateway's core as well (each run reports how much of it); default: unchanged
    nice = int(os.environ.get("BENCH_GATEWAY_NICE", "0"))
    usual_nice, usual_group = os.getpriority(os.PRIO_PROCESS, 0), autogroup_nice(os.getpid())
    if nice:
        set_nice(os.getpid(), nice)
        results["placement"]["note"] += f"; the bench's processes at nice {nice} (BENCH_GATEWAY_NICE)"
    results["placement"]["nice"] = nice or usual_nice
    results["pace_s"] = pace
    # the gateway's Bedrock connection pool bounds the streams it has open upstream; the rest wait for a connection
    from lambdas.gateway.config import GatewaySettings

    results["gateway_max_pool_connections"] = GatewaySettings.from_env().max_pool_connections
    # The deployed function's logging and metrics, and the Fargate task's read pacing: every case runs one process
    # with many streams, a task's shape (a Lambda environment serves one stream). GATEWAY_STREAM_INTERVAL_MS in this
    # process's environment overrides the task's value, for runs that compare intervals.
    environment = deployed_environment() | {
        "GATEWAY_STREAM_INTERVAL_MS": os.environ.get("GATEWAY_STREAM_INTERVAL_MS", str(STREAM_INTERVAL.default))
    }
    results["gateway_environment"] = environment
    scratch = Path(tempfile.mkdtemp(prefix="gateway-bench-"))
    # BENCH_GATEWAY_TLS (default 1): the emulator over HTTPS, as Bedrock, on a certificate made now for this run
    tls = None
    if os.environ.get("BENCH_GATEWAY_TLS", "1") != "0":
        from local.emulator.tls import certificate

        tls = certificate(scratch)
    results["tls"] = tls is not None
    server = Server(topology, environment, scratch / "gateway-output.log", cores, tls)
    print(f"gateway process: pid {server.gateway_pid} (profile it with: py-spy record --pid {server.gateway_pid})")
    print(f"cores: {results['placement']['note']}", flush=True)
    print(f"emulator: {server.emulator} ({'HTTPS' if tls else 'plain HTTP: BENCH_GATEWAY_TLS=0'})", flush=True)
    stream_s = len(PROMPT.split()) * pace  # one paced answer's length: the starts spread over it
    long_s = len(LONG_PROMPT.split()) * pace
    cases: dict[str, Callable[[], Coroutine[Any, Any, dict[str, dict[str, Any]]]]] = {
        "1": lambda: latency(server, 1, max(20, requests // 4)),
        "100": lambda: latency(server, 100, requests, pace=pace, stagger=stream_s),
        "100 burst": lambda: latency(server, 100, requests),
        AT_500: lambda: latency(server, 500, requests, pace=pace, stagger=long_s, prompt=LONG_PROMPT),
        AT_500_STRESS: lambda: latency(server, 500, requests, pace=pace, stagger=stream_s),
    }
    try:
        results["latency"] = {}
        for name in selected:
            if name in cases:
                print(f"case @{name}", flush=True)
                results["latency"][name] = asyncio.run(cases[name]())
        for pair in results["latency"].values():
            for key in ("ttft_p50_ms", "ttft_p99_ms", "total_p50_ms", "total_p99_ms"):
                pair[f"added_{key}"] = pair["gateway"].get(key, float("nan")) - pair["direct"].get(key, float("nan"))
        if "ramp" in selected:
            print("max concurrent streams (ramp):", flush=True)
            results["max_streams"] = asyncio.run(ramp(server, levels, delay))
    finally:
        server.close()
        if nice:  # the import time and the zip are measured as usual
            set_nice(os.getpid(), usual_nice)
            if usual_group is not None:
                Path("/proc/self/autogroup").write_text(str(usual_group))
        results["gateway_output"] = server.output_counts() | {"answers": Gateway.answers}
        server.output.unlink(missing_ok=True)
        for made in tls or ():
            made.unlink()
        scratch.rmdir()
    results["import_s"] = import_time()
    results["zip"] = zip_size()
    at100, at500 = results["latency"].get("100", {}), results["latency"].get(AT_500, {})
    results["checks"] = {
        "added_ttft_p50_ms": at100.get("added_ttft_p50_ms"),
        "added_ttft_p99_ms": at100.get("added_ttft_p99_ms"),
        "added_ttft_p50_ms_at_500": at500.get("added_ttft_p50_ms"),
        "max_streams": results.get("max_streams", {}).get("max_streams_without_errors"),
        "import_s": results["import_s"],
        "zip_mb": results["zip"].get("zip_mb"),
        "targets": TARGETS,
    }
    print_report(results)
    return results


def main() -> int:
    if sys.argv[1:2] == ["serve"]:
        serve(*sys.argv[2:4])
        return 0
    results = gateway_bench()
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(exist_ok=True)
    (out_dir / f"gateway-{time.strftime('%Y%m%d-%H%M%S')}.json").write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
