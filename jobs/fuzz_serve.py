"""HTTP fuzzing of the Serve app from its own OpenAPI schema (schemathesis + hypothesis), on loopback only.

    python -m jobs.fuzz_serve [--requests 1000] [--budget 180] [--json bench-results/fuzz.json]
    python -m jobs.fuzz_serve --url http://127.0.0.1:8000   # an app that runs already (key: RAYSCRIBE_API_KEYS)

Without ``--url`` it starts an embedded Ray with the app (one model replica, an API key of its own) on
127.0.0.1. The schema comes from the app's ``/openapi.json``; schemathesis generates requests for every
operation, in rounds alternating its positive mode (data the schema allows) and its negative mode (data it
forbids), and in half the rounds the ``model`` field is a served name, so generated uploads reach the decoder
rather than stopping at the model check. Every request carries the key (the key checks have their own tests).

What counts as a finding: any 5xx, any error answer (4xx) that is not OpenAI's ``{"error": {"message", "type",
"param", "code"}}`` JSON, and a request the server never answered. A table prints the request count, the
status counts and the findings; the JSON holds the same plus a reproducible description of each finding.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import secrets
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from jobs.harness.ports import free_port

REPO = Path(__file__).resolve().parents[1]
ERROR_FIELDS = ["message", "type", "param", "code"]
ROUND_EXAMPLES = 100  # hypothesis examples per round; rounds repeat until the target or the budget is reached
MUTATED_EXAMPLES = 50  # fewer in the mutated-audio rounds: half their uploads are transcribed, which takes longer
DEFAULT_SEED = 20261125
# What each round generates, in turn: schemathesis's two modes over every operation, the same with a served model
# name (so uploads reach the decoder), and real audio clips mutated byte-wise (so they reach the demuxers).
ROUNDS = ("positive", "negative", "positive, served model", "negative, served model", "mutated audio")


@dataclass
class Finding:
    """One request whose answer broke a rule, with enough to replay it."""

    rule: str
    method: str
    path: str
    status: int | None
    detail: str
    request: str

    def to_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


@dataclass
class FuzzReport:
    requests: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    error_codes: Counter[str] = field(default_factory=Counter)
    error_examples: dict[str, str] = field(default_factory=dict)  # the first message seen for each code
    operations: Counter[str] = field(default_factory=Counter)
    kinds: dict[str, Counter[str]] = field(default_factory=dict)  # round kind → answers by status and code
    findings: list[Finding] = field(default_factory=list)
    seconds: float = 0.0
    seed: int = DEFAULT_SEED
    rounds: int = 0

    @property
    def server_errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if status >= 500)

    def to_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests, "seconds": round(self.seconds, 2),
            "requests_per_second": round(self.requests / self.seconds, 1) if self.seconds else 0.0,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "error_codes": dict(self.error_codes.most_common()), "error_examples": self.error_examples,
            "server_errors": self.server_errors, "operations": dict(sorted(self.operations.items())),
            "kinds": {kind: dict(c.most_common()) for kind, c in self.kinds.items()},
            "rounds": self.rounds, "seed": self.seed, "findings": [f.to_dict() for f in self.findings[:50]],
            "finding_count": len(self.findings),
        }


def require_loopback(url: str) -> None:
    """Refuse anything but a loopback host: fuzzing someone else's server is not what this is for."""
    host = urlsplit(url).hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise SystemExit(f"refusing to fuzz {url}: only loopback addresses (127.0.0.1, ::1, localhost) are allowed")


def error_shape_problem(status: int, content_type: str, body: bytes) -> str | None:
    """Why an error answer is not OpenAI's error shape, or None when it is."""
    if "application/json" not in content_type:
        return f"content-type {content_type!r}, not JSON"
    try:
        data = json.loads(body)
    except ValueError:
        return "body is not JSON"
    if not isinstance(data, dict) or list(data) != ["error"] or not isinstance(data["error"], dict):
        return f"body is not {{'error': {{...}}}}: {body[:200]!r}"
    error = data["error"]
    if list(error) != ERROR_FIELDS:
        return f"error fields are {list(error)}, not {ERROR_FIELDS}"
    if not isinstance(error["message"], str) or not error["message"] or not isinstance(error["type"], str):
        return f"error message/type missing: {error!r}"
    if "Traceback" in error["message"]:
        return "a traceback in the message"
    return None


def _describe(case: Any) -> str:
    """The request as a short, replayable description (no API key)."""
    body = case.body
    if isinstance(body, dict):
        body = {k: (f"<{len(v)} bytes>" if isinstance(v, (bytes, bytearray)) and len(v) > 64 else v)
                for k, v in body.items()}
    text = (f"{case.method} {case.formatted_path} query={case.query!r} headers={case.headers!r} "
            f"body={body!r}")
    return text[:1000]


def audio_seeds(seconds: float = 1.0) -> list[bytes]:
    """Short, complete uploads to mutate: the first ``seconds`` of the bundled WAV re-encoded (with PyAV, in
    memory) as WAV, FLAC, MP3 and Ogg/Opus, so mutations reach each demuxer and decoder past a valid header."""
    import io

    import av
    import numpy as np

    from rayscribe.audio import SAMPLE_RATE, decode_audio

    samples = decode_audio(REPO / "samples" / "LJ001-0001.wav")[: int(seconds * SAMPLE_RATE)]
    pcm = (np.clip(samples, -1, 1) * 32767).astype(np.int16)
    seeds = []
    for container, codec, rate in (("wav", "pcm_s16le", 16000), ("flac", "flac", 16000), ("mp3", "libmp3lame", 16000),
                                   ("ogg", "libopus", 48000)):
        buffer = io.BytesIO()
        with av.open(buffer, "w", format=container) as out:
            stream: Any = out.add_stream(codec, rate=rate, layout="mono")
            frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
            frame.sample_rate = SAMPLE_RATE
            resampler = av.AudioResampler(format=stream.format.name, layout="mono", rate=rate)
            for chunk in resampler.resample(frame) + resampler.resample(None):
                out.mux(stream.encode(chunk))
            out.mux(stream.encode(None))
        seeds.append(buffer.getvalue())
    return seeds


def mutated_audio(seeds: list[bytes]) -> Any:
    """A hypothesis strategy of ``seeds`` cut short, with bytes overwritten (often in the header), or with
    random bytes spliced in."""
    from hypothesis import strategies as st

    @st.composite
    def mutate(draw: Any) -> bytes:
        data = bytearray(draw(st.sampled_from(seeds)))
        size = len(data)

        def position() -> int:  # hypothesis favours small numbers: half the positions count from the end
            offset = draw(st.integers(0, size - 1))
            return offset if draw(st.booleans()) else size - 1 - offset

        kind = draw(st.sampled_from(["truncate", "flip", "header", "splice"]))
        if kind == "truncate":
            del data[draw(st.integers(min(64, size), size)):]
        elif kind == "flip":
            for _ in range(draw(st.integers(1, 32))):
                data[position()] = draw(st.integers(0, 255))
        elif kind == "header":
            at = draw(st.integers(0, 60))
            patch = draw(st.binary(min_size=1, max_size=8))
            data[at:at + len(patch)] = patch
        else:
            start = position()
            end = draw(st.integers(start, size))
            data[start:end] = draw(st.binary(max_size=512))
        return bytes(data)

    return mutate()


def fuzz(base_url: str, api_key: str | None, *, target_requests: int = 1000, budget_s: float = 180.0,
         seed: int = DEFAULT_SEED, timeout_s: float = 60.0) -> FuzzReport:
    """Generate requests from the schema at ``base_url/openapi.json`` until ``target_requests`` were sent or
    ``budget_s`` ran out, and check every answer (see the module's docstring)."""
    import hypothesis
    import requests
    import schemathesis
    from hypothesis import HealthCheck, Phase
    from hypothesis import strategies as st
    from schemathesis import GenerationMode

    require_loopback(base_url)
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    served = requests.get(f"{base_url}/v1/models", headers=headers, timeout=timeout_s).json()["data"]
    model_names = st.sampled_from([m["id"] for m in served])
    report = FuzzReport(seed=seed)
    session = requests.Session()
    started = time.monotonic()

    def served_model(case: Any, name: str) -> Any:
        if isinstance(case.body, dict) and case.path == "/v1/audio/transcriptions":
            case.body["model"] = name
        return case

    def with_upload(case: Any, data: bytes, name: str, fields: dict[str, Any]) -> Any:
        case.body = {"file": data, "model": name, **fields}
        return case

    current: Counter[str] = Counter()

    def check(case: Any) -> None:
        if report.requests >= target_requests or time.monotonic() - started > budget_s:
            return
        report.requests += 1
        report.operations[f"{case.method} {case.path}"] += 1
        try:
            response = case.call(base_url=base_url, session=session, headers=headers, timeout=timeout_s)
        except requests.RequestException as exc:
            report.findings.append(Finding("no answer", case.method, case.formatted_path, None,
                                           f"{type(exc).__name__}: {exc}", _describe(case)))
            return
        status = response.status_code
        report.statuses[status] += 1
        if status < 400:
            current[str(status)] += 1
        content_type = ",".join(response.headers.get("content-type", []))
        if status >= 500:
            report.findings.append(Finding("5xx", case.method, case.formatted_path, status,
                                           response.content[:500].decode("utf-8", "replace"), _describe(case)))
        if status >= 400:
            problem = error_shape_problem(status, content_type, response.content)
            if problem:
                report.findings.append(Finding("error shape", case.method, case.formatted_path, status, problem,
                                               _describe(case)))
            else:
                error = json.loads(response.content)["error"]
                code = f"{status} {error['code']}"
                report.error_codes[code] += 1
                current[code] += 1
                report.error_examples.setdefault(code, str(error["message"])[:200])

    transcriptions = schema["/v1/audio/transcriptions"]["POST"]
    uploads = mutated_audio(audio_seeds())
    # Valid values for the other fields, so a mutated upload gets past validation to the decoder and the model.
    valid_fields = st.fixed_dictionaries({}, optional={
        "response_format": st.sampled_from(["json", "text", "srt", "vtt", "verbose_json"]),
        "language": st.sampled_from(["en", "EN", ""]),
        "temperature": st.floats(0, 1),
        "timestamp_granularities[]": st.sampled_from([["word"], ["segment"], ["word", "segment"]]),
        "stream": st.booleans(),
        "prompt": st.text(max_size=40),
    })
    while report.requests < target_requests and time.monotonic() - started < budget_s:
        kind = ROUNDS[report.rounds % len(ROUNDS)]
        current = report.kinds.setdefault(kind, Counter())
        if kind == "mutated audio":
            strategy = st.builds(with_upload, transcriptions.as_strategy(GenerationMode.POSITIVE), uploads,
                                 model_names, valid_fields)
        else:
            mode = GenerationMode.NEGATIVE if kind.startswith("negative") else GenerationMode.POSITIVE
            strategy = schema.as_strategy(generation_mode=mode)
            if kind.endswith("served model"):
                strategy = st.builds(served_model, strategy, model_names)
        before = report.requests

        examples = MUTATED_EXAMPLES if kind == "mutated audio" else ROUND_EXAMPLES

        @hypothesis.settings(max_examples=examples, deadline=None, database=None, phases=[Phase.generate],
                             suppress_health_check=list(HealthCheck), derandomize=False)
        @hypothesis.seed(seed + report.rounds)
        @hypothesis.given(case=strategy)
        def one_round(case: Any) -> None:
            check(case)

        one_round()
        report.rounds += 1
        if report.requests == before:  # the budget ran out mid-round
            break
    report.seconds = time.monotonic() - started
    return report


@contextmanager
def local_app(api_key: str) -> Iterator[str]:
    """An embedded Ray with the app on 127.0.0.1 and a free port; yields its base URL."""
    import ray
    from ray import serve

    from rayscribe.config.serve import load_serve_settings
    from rayscribe.config.settings import load_settings
    from serve.app import build_app

    temp_dir = tempfile.mkdtemp(prefix="rs-fuzz-serve-")
    try:
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, _temp_dir=temp_dir)
        port = free_port()
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve_settings = load_serve_settings(serve_host="127.0.0.1", serve_port=port, api_keys=api_key,
                                             min_replicas=1, max_replicas=1, cpus_per_replica=1.0,
                                             max_upload_mb=4)
        serve.run(build_app(load_settings(cpu_threads=2), serve_settings), name="fuzz", route_prefix="/")
        yield f"http://127.0.0.1:{port}"
        serve.shutdown()
    finally:
        ray.shutdown()
        shutil.rmtree(temp_dir, ignore_errors=True)


def render(report: FuzzReport) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(f"HTTP fuzzing: {report.requests} requests in {report.seconds:.1f} s ({report.rounds} rounds, "
                  f"seed {report.seed})", highlight=False)
    table = Table(title="answers")
    table.add_column("status")
    table.add_column("answers", justify="right")
    for status, count in sorted(report.statuses.items()):
        table.add_row(str(status), str(count))
    table.add_row("5xx", str(report.server_errors), style="red" if report.server_errors else "green")
    table.add_row("findings", str(len(report.findings)), style="red" if report.findings else "green")
    console.print(table)
    ops = Table(title="requests per operation")
    ops.add_column("operation")
    ops.add_column("requests", justify="right")
    for op, count in sorted(report.operations.items()):
        ops.add_row(op, str(count))
    for kind, counts in report.kinds.items():
        ops.add_row(f"[dim]{kind} rounds[/dim]", str(sum(counts.values())))
    for code, count in report.error_codes.most_common():
        ops.add_row(f"[dim]error {code}[/dim]", str(count))
    console.print(ops)
    for finding in report.findings[:10]:
        console.print(f"[red]{finding.rule}[/red] {finding.status} {finding.method} {finding.path}: "
                      f"{finding.detail}\n  {finding.request}")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--url", help="fuzz an app that runs at this loopback URL instead of starting one")
    parser.add_argument("--api-key", default=None,
                        help="the key of the app at --url (default: the first of RAYSCRIBE_API_KEYS)")
    parser.add_argument("--requests", type=int, default=1000, help="requests to send (default 1000)")
    parser.add_argument("--budget", type=float, default=180.0, help="time limit in seconds (default 180)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--json", type=Path, default=REPO / "bench-results" / "fuzz.json")
    args = parser.parse_args()
    if args.url:
        require_loopback(args.url)
        from rayscribe.config.serve import load_serve_settings

        key = args.api_key or next(iter(load_serve_settings().key_list()), None)
        report = fuzz(args.url.rstrip("/"), key, target_requests=args.requests, budget_s=args.budget,
                      seed=args.seed)
    else:
        key = f"sk-fuzz-{secrets.token_hex(8)}"
        with local_app(key) as url:
            report = fuzz(url, key, target_requests=args.requests, budget_s=args.budget, seed=args.seed)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    render(report)
    raise SystemExit(1 if report.findings else 0)


if __name__ == "__main__":
    main()
