"""Generate ``docs/architecture.svg``, the architecture diagram of the README and the docs: ``make diagram``.

Plain SVG written with the standard library (no Graphviz, no fonts or icons to download), so the output is the same
on every machine and ``tests/unit/test_diagram.py`` can check that the committed file is up to date. Edit the boxes
and arrows below, then run ``make diagram``.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

OUTPUT = Path(__file__).resolve().parent / "architecture.svg"
WIDTH, HEIGHT = 1260, 760
FONT = "Helvetica, Arial, sans-serif"
# AWS architecture icon category colours: compute, storage, app integration, machine learning, security, management.
COLOURS = {
    "client": "#545B64",
    "compute": "#ED7100",
    "storage": "#7AA116",
    "integration": "#E7157B",
    "ml": "#01A88D",
    "security": "#DD344C",
    "management": "#B0084D",
    "external": "#8C4FFF",
}


@dataclass(frozen=True)
class Box:
    x: int
    y: int
    w: int
    h: int
    title: str
    lines: tuple[str, ...]
    kind: str

    def anchor(self, side: str) -> tuple[float, float]:
        """A point on the box's edge: n, s, e, w, or ne/se/nw/sw-ish with a fraction, e.g. ``e:0.3``."""
        name, _, frac = side.partition(":")
        f = float(frac) if frac else 0.5
        return {
            "n": (self.x + self.w * f, self.y),
            "s": (self.x + self.w * f, self.y + self.h),
            "w": (self.x, self.y + self.h * f),
            "e": (self.x + self.w, self.y + self.h * f),
        }[name]


BOXES: dict[str, Box] = {
    # Batch inference orchestrator (top lane)
    "user": Box(30, 100, 140, 70, "User / CLI", ("python -m cli batch", "or the console"), "client"),
    "sfn": Box(
        260,
        90,
        190,
        100,
        "AWS Step Functions",
        ("Standard workflow", "Distributed Map, at most", "maxConcurrentJobs jobs"),
        "integration",
    ),
    "hf": Box(260, 235, 190, 60, "Hugging Face Hub", ("dataset_id (streaming)",), "external"),
    "lambdas": Box(
        540,
        85,
        230,
        140,
        "AWS Lambda (6 functions)",
        (
            "Preprocess input",
            "Submit job, Check job status",
            "Process job results",
            "Plan resubmission",
            "Finalize run",
        ),
        "compute",
    ),
    "s3": Box(
        540,
        265,
        230,
        80,
        "Amazon S3 data bucket",
        ("inputs/, runs/<run>/: jobs,", "output Parquet, summary.json"),
        "storage",
    ),
    "batch": Box(
        860,
        90,
        210,
        100,
        "Amazon Bedrock",
        ("batch inference jobs", "CreateModelInvocationJob", "50% below on-demand"),
        "ml",
    ),
    # Unified model gateway (bottom lane)
    "clients": Box(30, 465, 140, 80, "Clients", ("Poe (server bots)", "OpenAI SDK"), "client"),
    "apigw": Box(
        260,
        460,
        190,
        90,
        "Amazon API Gateway",
        ("REST, REGIONAL", "response streaming", "throttling, access logs"),
        "integration",
    ),
    "gateway": Box(
        540,
        450,
        230,
        110,
        "AWS Lambda",
        ("Lambda Web Adapter", "FastAPI app (uvicorn)", "bots.json: 30+ bots"),
        "compute",
    ),
    "runtime": Box(
        860,
        450,
        210,
        110,
        "Bedrock runtime",
        ("ConverseStream (text)", "InvokeModel (images)", "StartAsyncInvoke (video)"),
        "ml",
    ),
    "secrets": Box(540, 600, 230, 60, "AWS Secrets Manager", ("per-bot access keys",), "security"),
    "media": Box(860, 600, 210, 60, "Amazon S3 media bucket", ("images, videos, presigned URLs",), "storage"),
    # Shared by both stacks
    "kms": Box(
        1100, 90, 140, 100, "AWS KMS", ("kmsKey (optional):", "buckets, logs,", "state machine, jobs"), "security"
    ),
    "cw": Box(
        1100,
        240,
        140,
        150,
        "CloudWatch",
        ("JSON logs, metrics", "dashboards", "alarms (SNS mail)", "AWS X-Ray traces"),
        "management",
    ),
}

# (from box:side, to box:side, label, dashed, elbow: vertical then horizontal, both ends)
ARROWS: list[tuple[str, str, str, bool, bool, bool]] = [
    ("user:e", "sfn:w", "start run", False, False, False),
    ("user:s", "s3:w:0.75", "upload to inputs/", True, True, False),
    ("sfn:e", "lambdas:w", "invoke", False, False, False),
    ("hf:e", "lambdas:w:0.85", "", True, False, False),
    ("lambdas:s", "s3:n", "read / write", False, False, True),
    ("lambdas:e:0.3", "batch:w:0.4", "submit / poll", False, False, False),
    ("batch:s", "s3:e", "job files", False, False, True),
    ("clients:e", "apigw:w", "HTTPS, key", False, False, False),
    ("apigw:e", "gateway:w", "stream", False, False, False),
    ("gateway:e:0.4", "runtime:w:0.4", "invoke", False, False, False),
    ("gateway:s", "secrets:n", "", False, False, False),
    ("gateway:e:0.85", "media:n:0.3", "media", False, False, False),
]


def _text(x: float, y: float, value: str, *, size: int, weight: str = "normal", fill: str = "#232F3E") -> str:
    return (
        f'<text x="{x:.0f}" y="{y:.0f}" font-family="{FONT}" font-size="{size}" font-weight="{weight}" '
        f'fill="{fill}" text-anchor="middle">{escape(value)}</text>'
    )


def _box(box: Box) -> list[str]:
    colour = COLOURS[box.kind]
    cx = box.x + box.w / 2
    out = [
        f'<rect x="{box.x}" y="{box.y}" width="{box.w}" height="{box.h}" rx="8" fill="#FFFFFF" stroke="{colour}" '
        'stroke-width="2"/>',
        f'<rect x="{box.x}" y="{box.y}" width="{box.w}" height="22" rx="8" fill="{colour}"/>',
        f'<rect x="{box.x}" y="{box.y + 14}" width="{box.w}" height="8" fill="{colour}"/>',
        _text(cx, box.y + 16, box.title, size=13, weight="bold", fill="#FFFFFF"),
    ]
    out.extend(_text(cx, box.y + 40 + 15 * i, line, size=12) for i, line in enumerate(box.lines))
    return out


def _arrow(start: str, end: str, label: str, dashed: bool, elbow: bool, both: bool) -> list[str]:
    def point(spec: str) -> tuple[float, float]:
        name, _, side = spec.partition(":")
        return BOXES[name].anchor(side)

    (x1, y1), (x2, y2) = point(start), point(end)
    corners = [(x1, y1), (x1, y2), (x2, y2)] if elbow else [(x1, y1), (x2, y2)]
    dash = ' stroke-dasharray="5,4"' if dashed else ""
    head = ' marker-start="url(#arrow)"' if both else ""
    path = " ".join(f"{x:.0f},{y:.0f}" for x, y in corners)
    out = [
        f'<polyline points="{path}" fill="none" stroke="#545B64" stroke-width="1.6"{dash}{head} '
        'marker-end="url(#arrow)"/>'
    ]
    if label:
        (ax, ay), (bx, by) = corners[-2], corners[-1]  # the last segment carries the label
        mx, my = (ax + bx) / 2, (ay + by) / 2
        width = 6.2 * len(label) + 8
        out.append(f'<rect x="{mx - width / 2:.0f}" y="{my - 17:.0f}" width="{width:.0f}" height="15" fill="#FFFFFF"/>')
        out.append(_text(mx, my - 6, label, size=11, fill="#545B64"))
    return out


def _lane(x: int, y: int, w: int, h: int, title: str) -> list[str]:
    return [
        f'<rect x="{x}" y="{y}" width="{w}" height="{h}" rx="12" fill="#F2F3F3" stroke="#AAB7B8" '
        'stroke-dasharray="6,4"/>',
        f'<text x="{x + 15}" y="{y + 24}" font-family="{FONT}" font-size="16" font-weight="bold" fill="#232F3E">'
        f"{escape(title)}</text>",
    ]


def render() -> str:
    """The SVG document, deterministic."""
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}">',
        "<defs>",
        '<marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" markerHeight="8" '
        'orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#545B64"/></marker>',
        "</defs>",
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="#FFFFFF"/>',
        _text(WIDTH / 2, 30, "Generative AI on Amazon Bedrock: one CDK app, two products", size=18, weight="bold"),
        *_lane(15, 45, 1055, 330, "1. Batch inference orchestrator (stack BedrockBatchInference)"),
        *_lane(15, 400, 1055, 285, "2. Unified model gateway (stack BedrockModelGateway)"),
        *_lane(1085, 45, 170, 640, "Both stacks"),
    ]
    for arrow in ARROWS:
        parts.extend(_arrow(*arrow))
    for box in BOXES.values():
        parts.extend(_box(box))
    parts.append(
        _text(
            WIDTH / 2,
            HEIGHT - 40,
            "Dashed: optional inputs. Every function, the state machine and the API log to CloudWatch; with kmsKey, "
            "one customer-managed key encrypts the batch data, logs and job output.",
            size=12,
            fill="#545B64",
        )
    )
    parts.append(
        _text(
            WIDTH / 2,
            HEIGHT - 20,
            "Generated by docs/diagram.py (make diagram).",
            size=11,
            fill="#7F8C8D",
        )
    )
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def main(argv: list[str]) -> int:
    target = Path(argv[1]) if len(argv) > 1 else OUTPUT
    target.write_text(render(), encoding="utf-8")
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
