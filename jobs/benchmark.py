"""Benchmark: rayscribe batch against faster-whisper and WhisperX called directly, on the same CPU budget.

    python -m jobs.benchmark [--quick] [--json PATH] [--minutes 10] [--device cuda] [--only queue|longform]
    ray job submit --working-dir . -- python -m jobs.benchmark --quick

Same model (the bundled ``tiny.en``, int8 on CPU), same total threads (2) and batch size (8) for everyone, on
two workloads built from the shared speech clips:

- long-form: the clips concatenated (reshuffled rounds, 0.5 s silences) into one WAV of ``--minutes``;
- short files: the clips as individual files.

- queue vs batch: the short files as SQS jobs through ``rayscribe worker --drain --workers 2`` against
  ``rayscribe transcribe <files> --workers 2``, each a whole command on its own embedded Ray (``jobs/bench_queue.py``;
  ``--only queue`` runs just this, in about 2 minutes).

- long-form, whole commands: ``rayscribe transcribe --address <running cluster>`` on one ``--command-minutes``
  (27) min file against faster-whisper's pipeline direct (``cpu_threads=2``), each a fresh subprocess timed from
  start to exit; rayscribe with warm worker sets off, then on twice (cold: builds the set; warm: reuses it)
  (``jobs/bench_longform.py``; ``--only longform`` runs just this).

With ``--device cuda`` everyone runs float16 on the one GPU instead (rayscribe: 1 worker with the whole GPU,
and 2 workers with half each); WhisperX is left out where it is not installed.

Contenders: rayscribe ``run_batch`` on a Ray cluster started once (two worker layouts: 1 x 2 threads and
2 x 1 thread), faster-whisper's ``BatchedInferencePipeline`` and WhisperX, each direct engine in a fresh
process. Speed is audio seconds per wall second with one-time start-up (Ray, pool / model load) in its own
column; memory is peak RSS; accuracy is corpus WER after Whisper's English normalisation.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import importlib.util
import json
import os
import platform
import resource
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import psutil

from jobs.bench_longform import RUNS as COMMAND_RUNS
from jobs.bench_longform import command_ratio, whole_commands
from jobs.bench_queue import queue_ratio, queue_vs_batch
from jobs.harness.audio import GAP_SECONDS, Clip, build_long_form, shared_clips, spread, write_wav
from jobs.harness.ray_cluster import embedded_ray
from jobs.harness.speech import speech_dir, wer
from rayscribe.audio import SAMPLE_RATE, decode_audio
from rayscribe.engines.device import choose_device
from rayscribe.engines.model_paths import resolve_model

MODEL = "tiny.en"
THREADS = 2
BATCH_SIZE = 8
SAMPLE_EVERY = 0.2  # seconds between RSS samples
QUICK_MINUTES = 2.0
QUICK_SHORT_FILES = 10
LAYOUTS = ((1, THREADS), (THREADS, 1))  # (workers, threads per worker)
TARGETS = {"long_form": 1.0, "short_files": 2.0}  # rayscribe speed / direct faster-whisper speed
T = TypeVar("T")
VERSIONED = ("ray", "faster-whisper", "ctranslate2", "whisperx", "torch", "onnxruntime")


@dataclass
class Row:
    """One contender on one workload."""

    scenario: str  # long_form | short_files
    contender: str
    layout: str
    files: int
    audio_seconds: float
    startup_seconds: float  # model load (direct) or pool start-up (rayscribe); Ray's start is reported apart
    wall_seconds: float  # transcription, decoding included, start-up excluded
    peak_rss_mb: float
    cpu_seconds: float  # start-up and transcription, every process of the contender
    wer: float
    failed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def speed(self) -> float:
        return self.audio_seconds / self.wall_seconds if self.wall_seconds > 0 else 0.0


# -- measuring ------------------------------------------------------------------------------------------


class ProcessSampler:
    """Samples this process and its descendants (an embedded Ray cluster's processes) in a thread.

    ``peak_mb``: peak summed RSS of the driver plus Ray worker processes (``ray::*``); ``peak_all_mb``: of
    every process in the tree, Ray's own services (GCS, raylet, agents) included; ``cpu_seconds``: CPU time
    (user + system) the tree used while sampled (a process that exits loses its last interval)."""

    def __init__(self, every: float = SAMPLE_EVERY) -> None:
        self.every = every
        self.peak_mb = 0.0
        self.peak_all_mb = 0.0
        self._cpu: dict[int, list[float]] = {}  # pid -> [CPU seconds when first seen, latest]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    @property
    def cpu_seconds(self) -> float:
        return sum(last - first for first, last in self._cpu.values())

    def sample(self, first: bool = False) -> None:
        root = psutil.Process()
        workers = total = 0
        for proc in [root, *root.children(recursive=True)]:
            try:
                with proc.oneshot():
                    rss, times = proc.memory_info().rss, proc.cpu_times()
                    is_worker = proc.pid == root.pid or proc.name().startswith("ray::")
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            total += rss
            workers += rss if is_worker else 0
            cpu = times.user + times.system
            self._cpu.setdefault(proc.pid, [cpu if first else 0.0, cpu])[1] = cpu
        self.peak_mb = max(self.peak_mb, workers / 2**20)
        self.peak_all_mb = max(self.peak_all_mb, total / 2**20)

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            self.sample()

    def __enter__(self) -> ProcessSampler:
        self.sample(first=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()


def direct_run(engine: str, paths: list[str], threads: int = THREADS, batch_size: int = BATCH_SIZE,
               device: str = "cpu", compute_type: str = "int8") -> dict:
    """Load ``engine`` and transcribe ``paths`` one after another; meant to run in a fresh process, so its
    peak RSS and CPU time are the contender's alone. Start-up: imports and model load."""
    started, cpu = time.perf_counter(), _cpu_seconds()
    transcribe: Callable[[np.ndarray], str]
    if engine == "faster-whisper":
        from faster_whisper import BatchedInferencePipeline, WhisperModel

        model = WhisperModel(resolve_model(MODEL), device=device, compute_type=compute_type, cpu_threads=threads)
        pipeline = BatchedInferencePipeline(model)

        def transcribe(audio: np.ndarray) -> str:
            segments, _ = pipeline.transcribe(audio, batch_size=batch_size, word_timestamps=True,
                                              language="en")
            return " ".join(s.text.strip() for s in segments)
    else:
        import torch
        import whisperx

        torch.set_num_threads(threads)  # its pyannote VAD runs on torch
        xmodel = whisperx.load_model(resolve_model(MODEL), device=device, compute_type=compute_type, threads=threads,
                                     language="en", vad_method="pyannote")

        def transcribe(audio: np.ndarray) -> str:
            result = xmodel.transcribe(audio, batch_size=batch_size)
            return " ".join(s["text"].strip() for s in result["segments"])
    load = time.perf_counter() - started
    running = time.perf_counter()
    texts = [transcribe(decode_audio(p)) for p in paths]
    return {"startup_seconds": load, "wall_seconds": time.perf_counter() - running, "texts": texts,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "cpu_seconds": _cpu_seconds() - cpu}


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def in_fresh_process(fn: Callable[..., dict], *args: Any) -> dict:
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()


def rayscribe_run(paths: list[str], out_dir: Path, workers: int, threads: int, device: str = "cpu",
                  compute_type: str = "int8") -> dict:
    """``run_batch`` on the running Ray cluster; start-up = pool start (model loads), wall = the rest."""
    from jobs.batch import run_batch
    from rayscribe.config.settings import load_settings

    settings = load_settings(model=MODEL, device=device, compute_type=compute_type, batch_size=BATCH_SIZE,
                             word_timestamps=True, language="en", workers=workers, cpus_per_worker=threads,
                             cpu_threads=threads, gpu_per_worker=1.0 / workers, log_level="WARNING")
    with ProcessSampler() as sampler:
        started = time.perf_counter()
        report = run_batch(paths, out_dir, settings, overwrite=True)
        total = time.perf_counter() - started
    texts = {r.name: r.transcript.text for r in report.results if r.transcript is not None}
    return {"startup_seconds": report.startup_seconds, "wall_seconds": total - report.startup_seconds,
            "texts": [texts.get(p, "") for p in paths], "failed": len(report.failed),
            "peak_rss_mb": sampler.peak_mb, "cpu_seconds": sampler.cpu_seconds,
            "extra": {"peak_rss_all_processes_mb": round(sampler.peak_all_mb, 1),
                      "run_batch_wall_seconds": round(report.wall_seconds, 3)}}


# -- reporting ------------------------------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions: dict[str, str | None] = {}
    for name in VERSIONED:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "cpu": cpu, "cores": os.cpu_count(), "ram_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(), "platform": platform.platform(), "versions": versions,
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def gpu_name() -> str:
    """The GPU's name, from nvidia-smi (the benchmark records which card gave its figures)."""
    import subprocess

    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown GPU"
    return out.strip().splitlines()[0] if out.strip() else "unknown GPU"


def ratios(rows: Sequence[Row]) -> dict[str, dict[str, Any]]:
    """rayscribe's speed over direct faster-whisper's, per workload and layout, against the targets; and
    how much less CPU time rayscribe used (start-up included)."""
    out: dict[str, dict[str, Any]] = {}
    for scenario, target in TARGETS.items():
        base = next((r for r in rows if r.scenario == scenario and r.contender == "faster-whisper"), None)
        ours = [r for r in rows if r.scenario == scenario and r.contender == "rayscribe"]
        if base is None or not ours or base.speed == 0:
            continue
        by_layout = {r.layout: round(r.speed / base.speed, 3) for r in ours}
        best = max(by_layout, key=lambda k: by_layout[k])
        # less sensitive to other load on the machine: direct CPU seconds / rayscribe CPU seconds
        cpu = {r.layout: round(base.cpu_seconds / r.cpu_seconds, 3) for r in ours if r.cpu_seconds > 0}
        out[scenario] = {"target": target, "by_layout": by_layout, "best_layout": best,
                         "best": by_layout[best], "met": by_layout[best] >= target, "cpu_by_layout": cpu}
    return out


def results_dict(rows: Sequence[Row], info: dict[str, Any], settings: dict[str, Any]) -> dict[str, Any]:
    return {
        "machine": info,
        "settings": settings,
        "rows": [{**asdict(r), "speed_x_real_time": round(r.speed, 2)}
                 for r in rows],
        "ratios": {**ratios(rows), **queue_ratio(rows), **command_ratio(rows)},
    }


def render(results: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    settings = results["settings"]
    where = settings.get("gpu") or "CPU"
    table = Table(title=f"rayscribe benchmark: {settings['model']} {settings['compute_type']}, {where}, "
                        f"{settings['threads']} threads, "
                        f"batch {settings['batch_size']} (layout: processes or Ray workers x threads each)",
                  caption=f"Ray cluster start-up (once): {settings.get('ray_startup_seconds', 0):.2f} s")
    for name in ("workload", "contender", "layout"):
        table.add_column(name, no_wrap=True)
    for name in ("files", "audio s", "start-up s", "wall s", "x real time", "peak RSS MB", "CPU s", "WER",
                 "load 1m"):
        table.add_column(name, justify="right", no_wrap=True)
    for r in results["rows"]:
        accuracy = f"{100 * r['wer']:.1f}%" + (f" ({r['failed']} failed)" if r["failed"] else "")
        table.add_row(r["scenario"], r["contender"], r["layout"], str(r["files"]),
                      f"{r['audio_seconds']:.1f}", f"{r['startup_seconds']:.2f}", f"{r['wall_seconds']:.1f}",
                      f"{r['speed_x_real_time']:.1f}", f"{r['peak_rss_mb']:.0f}", f"{r['cpu_seconds']:.0f}", accuracy,
                      f"{r['extra'].get('load_average_1m_before', float('nan')):.1f}")
    console = Console() if sys.stdout.isatty() else Console(width=160)  # no wrapping in logs
    console.print(table)
    for scenario, ratio in results["ratios"].items():
        if scenario == "long_form_command":
            runs = ", ".join(f"{k.removeprefix('rayscribe_')}: {v:.2f}x" for k, v in ratio["by_run"].items())
            console.print(f"long-form whole command ({ratio['audio_seconds']:.0f} s audio): direct faster-whisper "
                          f"wall / rayscribe transcribe --address wall = {runs}; target >= {ratio['target']:.1f}x "
                          f"(warm): {'met' if ratio['met'] else 'MISSED'}; direct runs "
                          f"{' / '.join(f'{w:.1f}' for w in ratio['direct_wall_seconds'])} s "
                          f"(spread {100 * ratio['direct_spread']:.0f} %)")
            continue
        if scenario == "queue_vs_batch":
            verdict = "met" if ratio["met"] else "MISSED"
            console.print(f"queue vs batch (whole commands): worker --drain {ratio['queue_wall_seconds']:.1f} s / "
                          f"transcribe {ratio['batch_wall_seconds']:.1f} s = {ratio['queue_over_batch']:.2f}, "
                          f"target <= {ratio['target']:.2f}: {verdict}; WER queue "
                          f"{100 * ratio['queue_wer']:.1f}% / batch {100 * ratio['batch_wer']:.1f}%")
            continue
        layouts = ", ".join(f"{k}: {v:.2f}x" for k, v in ratio["by_layout"].items())
        verdict = "met" if ratio["met"] else "MISSED"
        cpu = ", ".join(f"{k}: {v:.2f}x" for k, v in ratio["cpu_by_layout"].items())
        console.print(f"{scenario}: speed rayscribe / direct faster-whisper = {layouts}; best {ratio['best']:.2f}x "
                      f"({ratio['best_layout']}), target >= {ratio['target']:.1f}x: {verdict}; "
                      f"CPU seconds direct / rayscribe = {cpu}")


# -- the run --------------------------------------------------------------------------------------------


def row(scenario: str, contender: str, layout: str, clips: Sequence[Clip], refs: list[str], run: dict) -> Row:
    return Row(scenario=scenario, contender=contender, layout=layout, files=len(clips),
               audio_seconds=round(sum(c.seconds for c in clips), 3),
               startup_seconds=round(run["startup_seconds"], 3), wall_seconds=round(run["wall_seconds"], 3),
               peak_rss_mb=round(run["peak_rss_mb"], 1), cpu_seconds=round(run["cpu_seconds"], 2),
               wer=round(wer(refs, run["texts"]), 4),
               failed=run.get("failed", 0), extra=run.get("extra", {}))


def benchmark(minutes: float, short_files: int | None, address: str | None, work: Path,
              save: Callable[[dict[str, Any]], None] = lambda results: None, device: str = "cpu",
              only: str | None = None, command_minutes: float = 27.0) -> dict[str, Any]:
    """Run every contender on both workloads, then the queue-vs-batch commands (``only="queue"``: just those) and
    the long-form whole commands on ``command_minutes`` of audio (``only="longform"``: just those); ``save`` gets
    the results so far after each row."""
    info = machine_info()
    compute_type = choose_device(device).compute_type  # float16 on cuda, int8 on cpu: the engines' own rule
    engines = ["faster-whisper"]
    if device == "cpu" or importlib.util.find_spec("whisperx") is not None:
        engines.append("whisperx")
    long_clips, all_clips = shared_clips(speech_dir())
    shorts = spread(all_clips, short_files) if short_files else all_clips
    long_form: list[Clip] = []
    if only is None:
        audio, reference = build_long_form([(decode_audio(c.path), c.text) for c in long_clips], minutes * 60)
        long_path = work / "long-form.wav"
        write_wav(long_path, audio)
        long_form = [Clip(long_path, reference, audio.shape[0] / SAMPLE_RATE)]
    workloads = {"long_form": long_form, "short_files": shorts, "queue_vs_batch": shorts}
    settings: dict[str, Any] = {
        "model": MODEL, "model_path": resolve_model(MODEL), "compute_type": compute_type, "device": device,
        "gpu": gpu_name() if device == "cuda" else None,
        "threads": THREADS, "batch_size": BATCH_SIZE, "word_timestamps": True, "minutes": minutes,
        "short_files": len(shorts), "gap_seconds": GAP_SECONDS,
        "ray_address": address or "embedded (ray.init address=local)",
        # a joined cluster's processes are not this process's children: only the driver is sampled then
        "rayscribe_rss_scope": "driver only" if address else "driver + Ray worker processes (ray::*)",
    }
    rows: list[Row] = []

    def measure(scenario: str, contender: str, layout: str, fn: Callable[..., dict], *args: Any) -> None:
        print(f"[{scenario}] {contender}, {layout} ...", flush=True)
        load = os.getloadavg()[0]  # other work on the machine skews timings: keep a trace of it
        run = fn(*args)
        run.setdefault("extra", {})["load_average_1m_before"] = round(load, 2)
        clips = workloads[scenario]
        rows.append(row(scenario, contender, layout, clips, [c.text for c in clips], run))
        save({**results_dict(rows, info, settings), "complete": False})

    def queue_rows() -> None:
        print(f"[queue_vs_batch] rayscribe worker --drain vs rayscribe transcribe, {len(shorts)} files ...",
              flush=True)
        load = os.getloadavg()[0]
        runs = queue_vs_batch(shorts, work / "queue-vs-batch", workers=2)
        for name, contender in (("queue", "rayscribe worker"), ("batch", "rayscribe transcribe")):
            runs[name]["extra"]["load_average_1m_before"] = round(load, 2)
            rows.append(row("queue_vs_batch", contender, "2 wkr, whole command", shorts,
                            [c.text for c in shorts], runs[name]))
        save({**results_dict(rows, info, settings), "complete": False})

    def command_rows() -> None:
        """The long-form whole commands (jobs/bench_longform.py) on a running cluster: ``address``, else a
        ``ray start`` head of 2 CPUs started (and stopped) here."""
        from jobs.harness.ray_cluster import start_head

        audio, reference = build_long_form([(decode_audio(c.path), c.text) for c in long_clips],
                                           command_minutes * 60)
        path = write_wav(work / "long-form-command.wav", audio)
        clip = Clip(path, reference, audio.shape[0] / SAMPLE_RATE)
        workloads["long_form_command"] = [clip]
        print(f"[long_form_command] {clip.seconds / 60:.1f} min, whole commands ...", flush=True)
        head = None if address else start_head(num_cpus=THREADS)
        settings["command_ray_address"] = address or f"ray start --head --num-cpus={THREADS} (harness)"
        load = os.getloadavg()[0]
        target = address or (head.address if head is not None else "")
        try:
            runs = whole_commands(clip, target, work / "commands", model=MODEL)
        finally:
            if head is not None:
                head.stop()
        for name, ours, _ in COMMAND_RUNS:
            run = {"startup_seconds": 0.0, "wall_seconds": runs[name]["wall_seconds"], "texts": [runs[name]["text"]],
                   "peak_rss_mb": 0.0, "cpu_seconds": 0.0, "extra": {"load_average_1m_before": round(load, 2)}}
            rows.append(row("long_form_command", "rayscribe" if ours else "faster-whisper", name, [clip],
                            [clip.text], run))
        save({**results_dict(rows, info, settings), "complete": False})

    if only == "queue":
        queue_rows()
        return {**results_dict(rows, info, settings), "complete": True}
    if only == "longform":
        command_rows()
        return {**results_dict(rows, info, settings), "complete": True}
    for scenario in ("long_form", "short_files"):  # direct engines first, while no Ray process is running
        clips = workloads[scenario]
        for engine in engines:
            measure(scenario, engine, f"1 proc x {THREADS} thr", in_fresh_process, direct_run, engine,
                    [str(c.path) for c in clips], THREADS, BATCH_SIZE, device, compute_type)
    from actors.cluster import worker_env

    with embedded_ray(THREADS, num_gpus=1 if device == "cuda" else 0, address=address, temp_dir=work / "ray",
                      runtime_env={"env_vars": worker_env()}) as ray_startup:
        settings["ray_startup_seconds"] = round(ray_startup, 3)
        for workers, threads in LAYOUTS:
            share = f", {1 / workers:g} GPU" if device == "cuda" else ""
            for scenario in ("long_form", "short_files"):
                clips = workloads[scenario]
                measure(scenario, "rayscribe", f"{workers} wkr x {threads} thr{share}", rayscribe_run,
                        [str(c.path) for c in clips], work / f"out-{scenario}-{workers}x{threads}", workers,
                        threads, device, compute_type)
    queue_rows()  # after the embedded cluster is gone: each command starts its own
    command_rows()
    return {**results_dict(rows, info, settings), "complete": True}


def write_json(path: Path, results: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m jobs.benchmark", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help=f"{QUICK_MINUTES:.0f} min long-form audio and {QUICK_SHORT_FILES} short files")
    parser.add_argument("--minutes", type=float, default=None, help="long-form length (default 10, quick 2)")
    parser.add_argument("--json", type=Path, default=Path("bench-results/benchmark.json"),
                        help="results file (default bench-results/benchmark.json)")
    parser.add_argument("--address", default=os.environ.get("RAY_ADDRESS"),
                        help="Ray cluster to join (default: $RAY_ADDRESS, else an embedded 2-CPU cluster)")
    parser.add_argument("--only", choices=("queue", "longform", "languages"), default=None,
                        help="queue: only the queue-vs-batch comparison of whole commands (about 2 minutes); "
                        "longform: only the long-form whole commands (rayscribe transcribe --address against "
                        "faster-whisper direct, about 5 minutes on 2 quiet cores); languages: only the "
                        "multilingual and mixed sets (jobs/bench_languages.py)")
    parser.add_argument("--command-minutes", type=float, default=27.0,
                        help="audio length of the long-form whole-command comparison (default 27)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="cpu (int8, the default) or cuda (float16 on one GPU)")
    args = parser.parse_args(argv)
    if args.only == "languages":
        from jobs import bench_languages

        bench_languages.main([*(["--quick"] if args.quick else []), "--json",
                              str(args.json.with_name("languages.json"))])
        return
    minutes = args.minutes or (QUICK_MINUTES if args.quick else 10.0)
    command = " ".join(["python -m jobs.benchmark", *(sys.argv[1:] if argv is None else argv)])

    def save(results: dict[str, Any]) -> None:
        write_json(args.json, {"command": command, **results})

    with tempfile.TemporaryDirectory(prefix="rs-bench-") as work:
        short_files = QUICK_SHORT_FILES if args.quick else None
        results = benchmark(minutes, short_files, args.address, Path(work), save, args.device, args.only,
                            args.command_minutes)
    save(results)
    render(results)
    print(f"results written to {args.json}")


if __name__ == "__main__":
    main()
