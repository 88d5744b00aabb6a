"""The preprocess variants the benchmark compares on each input path; each runs in its own process (peak RSS is its
own).

``python -m bench.preprocess_variants VARIANT PATH INPUT OUTDIR MAX_PER_JOB [REFERENCE]`` prints a JSON line with
seconds and rows. PATH is the input path: ``parquet``, ``csv`` or ``jsonl`` (an S3 object; INPUT is the local file)
or ``hf`` (a Hugging Face dataset streamed from a local fake hub serving INPUT, a Parquet file, as the dataset's train
split; the hub runs in a process of its own, ``python -m bench.preprocess_variants serve-hub PARQUET``). VARIANT:

- ``ours``: the deployed preprocess function (``lambda_handler``, see bench/production.py) on that input;
- ``anchor``: the public samples' approach: read everything into pandas, then a dict, ``str.format`` and
  ``json.dumps`` per row;
- ``floor``: the least work any implementation must do on that input: read it once (decode every row) and write the
  job files once from the process's memory (the anchor's bytes, REFERENCE, mapped into memory before timing starts:
  any implementation builds the lines in its memory and sends them from there, so an in-kernel file copy, which
  moves no byte through the process, would be less than any implementation can do);
- ``floor+records``: the floor plus writing every row to a Parquet file once, as preprocess writes records.parquet
  for the inputs that are not Parquet objects (shown for those paths; not a target).
"""

from __future__ import annotations

import json
import math
import mmap
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pandas as pd  # imported before timing starts, like every variant's imports
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq

from bench.production import BUCKET, PATHS, LambdaContext, LocalS3, use_local_aws
from bench.timing import report
from lambdas.preprocess import handler
from lambdas.preprocess.logic import ONE_PASS_RECORDS, RECORDS_ENCODINGS

MODEL = "anthropic.claude-3-haiku-20240307-v1:0"
PROMPT = "question_answering"
HF_REPO = "bench/simplecot"
HF_FILE = "data/train-00000-of-00001.parquet"
ROOT = Path(__file__).resolve().parent.parent
ONE_PASS_ENCODING = RECORDS_ENCODINGS[ONE_PASS_RECORDS]  # how preprocess writes the records of a CSV or JSONL input


@contextmanager
def hub(parquet: Path) -> Iterator[str]:
    """Serve ``parquet`` as the train split of HF_REPO on a local fake hub in a process of its own (the served file and
    the hub's work stay out of the measured process: the real hub is another machine), and point this process's HF
    libraries at it (set up before timing starts); yields the file's URL on the hub."""
    from tests.fakehub import RemoteHub, use_hub

    with ExitStack() as stack:
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-hub-")))
        server = subprocess.Popen(
            [sys.executable, "-m", "bench.preprocess_variants", "serve-hub", str(parquet)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        assert server.stdin is not None and server.stdout is not None
        stack.callback(server.wait)
        stack.callback(server.stdin.close)  # the server stops when its stdin closes
        remote = stack.enter_context(use_hub(RemoteHub(int(server.stdout.readline())), scratch))
        yield f"{remote.endpoint}/datasets/{HF_REPO}/resolve/main/{HF_FILE}"


def serve_hub(parquet: Path) -> None:
    """The hub's process: serve ``parquet`` as HF_REPO's train split, print the port, stop when stdin closes."""
    from tests.fakehub import FakeHub, FakeRepo, RepoFile

    served = FakeHub({HF_REPO: FakeRepo(HF_REPO, {HF_FILE: RepoFile(HF_FILE, parquet.read_bytes())})}).start()
    print(served.port, flush=True)
    sys.stdin.read()
    served.stop()


def ours(path: str, source: Path, out: Path, max_per_job: int) -> int:
    """The deployed function: the handler with its decorators and the production environment (set by the caller
    before this process imported anything), the input read from (local) S3 or the hub; job files, records and
    manifest written to (local) S3."""
    s3 = LocalS3(out / "s3")
    use_local_aws(s3)
    if path == "hf":
        inp: dict[str, Any] = {"dataset_id": HF_REPO, "split": "train"}
    else:
        key = f"inputs/{source.name}"
        (s3.root / BUCKET / key).parent.mkdir(parents=True)
        (s3.root / BUCKET / key).symlink_to(source.resolve())
        inp = {"s3_uri": f"s3://{BUCKET}/{key}"}
    event = {"input": {"model_id": MODEL, "prompt_id": PROMPT, **inp}, "execution_name": "bench-run"}
    run = handler.lambda_handler(event, LambdaContext())
    (out / "run-context.json").write_text(json.dumps(run))  # what the state machine passes on (postprocess uses it)
    return int(run["total_records"])


def read_all(path: str, source: Path, scratch: Path) -> pd.DataFrame:
    """How the public samples load each input: all of it, into pandas."""
    if path == "parquet":
        return pd.read_parquet(source)
    if path == "csv":
        return pd.read_csv(source)
    if path == "jsonl":
        return pd.read_json(source, lines=True)
    import datasets

    return datasets.load_dataset(HF_REPO, split="train", cache_dir=str(scratch / "hf-cache")).to_pandas()


def anchor(path: str, source: Path, out: Path, max_per_job: int) -> int:
    """The approach of the public samples: everything in memory, per-row dict, str.format, json.dumps."""
    from lambdas.shared.model_families import InferenceSettings, resolve
    from prompt_templates import prompt_id_to_template

    frame = read_all(path, source, out)
    template = prompt_id_to_template[PROMPT]
    adapter = resolve(MODEL).adapter
    settings = InferenceSettings()
    rows = frame.to_dict("records")
    count = math.ceil(len(rows) / max_per_job)
    size = math.ceil(len(rows) / count)
    for index in range(count):
        lines = []
        for offset, row in enumerate(rows[index * size : (index + 1) * size]):
            record = {
                "recordId": f"{index * size + offset:011d}",
                "modelInput": adapter.build_model_input(template.format(**row), settings),
            }
            lines.append(json.dumps(record))
        (out / f"{index:04d}.jsonl").write_text("\n".join(lines) + "\n")
    return len(rows)


def _batches(path: str, source: Path, url: str) -> Iterator[pa.RecordBatch]:
    """Read the input once, decoding every row into Arrow, as streaming as each format allows."""
    if path == "parquet":
        yield from pq.ParquetFile(source).iter_batches(batch_size=65_536)
    elif path == "csv":
        yield from pacsv.open_csv(source)
    elif path == "jsonl":
        yield from pajson.open_json(source)
    else:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # the hub is on 127.0.0.1
        with opener.open(url) as answer:
            data = answer.read()  # one GET of the whole file from the hub
        yield from pq.ParquetFile(pa.BufferReader(data)).iter_batches(batch_size=65_536)


def floor(
    path: str, source: Path, out: Path, jobs: list[tuple[str, mmap.mmap]], url: str, *, records: bool = False
) -> int:
    """What cannot be avoided: read the input once and write the same job files (the anchor's JSONL, ``jobs``: each
    file's name and its bytes, already in memory) once, each from memory with write(), as any implementation sends
    the lines it built. ``records``: also write every row to a Parquet file as preprocess's one pass writes
    records.parquet (``ONE_PASS_ENCODING``: uncompressed, no dictionaries, no statistics), the least an
    implementation that keeps a CSV, JSONL or HF input's rows as Parquet for postprocess must add."""
    rows, writer = 0, None
    try:
        for batch in _batches(path, source, url):
            rows += batch.num_rows
            if records:
                writer = writer or pq.ParquetWriter(out / "records.parquet", batch.schema, **ONE_PASS_ENCODING)
                writer.write_batch(batch)
    finally:
        if writer is not None:
            writer.close()
    for name, data in jobs:
        with (out / name).open("wb", buffering=0) as job:
            job.write(data)
    return rows


@contextmanager
def in_memory(reference: Path) -> Iterator[list[tuple[str, mmap.mmap]]]:
    """The job files of ``reference`` in this process's memory (mapped, every page read in before timing starts):
    the bytes the floor writes, as an implementation holds the lines it built."""
    with ExitStack() as stack:
        jobs = []
        for shard in sorted(reference.glob("*.jsonl")):
            file = stack.enter_context(shard.open("rb"))
            data = stack.enter_context(
                mmap.mmap(file.fileno(), 0, flags=mmap.MAP_SHARED | mmap.MAP_POPULATE, prot=mmap.PROT_READ)
            )
            jobs.append((shard.name, data))
        yield jobs


def main() -> None:
    if sys.argv[1] == "serve-hub":
        serve_hub(Path(sys.argv[2]))
        return
    variant, path, source, out, max_per_job = sys.argv[1:6]
    if path not in PATHS:
        raise SystemExit(f"PATH must be one of {PATHS}, not {path!r}")
    source_path, out_path, per_job = Path(source), Path(out), int(max_per_job)
    with ExitStack() as stack:
        url = stack.enter_context(hub(source_path)) if path == "hf" else ""
        run: Callable[[Path], int]
        if variant in ("floor", "floor+records"):
            jobs, records = stack.enter_context(in_memory(Path(sys.argv[6]))), variant == "floor+records"
            run = lambda target: floor(path, source_path, target, jobs, url, records=records)  # noqa: E731
        elif variant == "ours":
            run = lambda target: ours(path, source_path, target, per_job)  # noqa: E731
        else:
            run = lambda target: anchor(path, source_path, target, per_job)  # noqa: E731
        report(f"{variant} {path}", run, out_path)


if __name__ == "__main__":
    main()
