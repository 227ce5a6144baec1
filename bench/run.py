"""ferry benchmark: ferry side by side with the servers a user would pick instead, one run.

    bench/setup.sh && .venv/bin/python bench/run.py            # full run (3 rounds)
    .venv/bin/python bench/run.py --quick                      # smoke run, one short round

For each model and workload (single-row requests at concurrency 1, 16, 64; 1000-row requests
at concurrency 4), every contender is started pinned to core 1 (``taskset -c 1``), checked
for correct answers, loaded by wrk pinned to core 0, measured (cold start, PSS) and stopped
by PID. Rounds are interleaved across contenders; medians of rounds are reported.
Raw results go to bench/results/<timestamp>.json, the report to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH / "servers"))

from bench_util import free_port  # noqa: E402
from contenders import CONTENDERS, MODELS, PROTOCOLS, WORK, Contender  # noqa: E402

import report  # noqa: E402  (bench/report.py)

LUA = BENCH / "lua"
RESULTS = BENCH / "results"
LOGS = WORK / "logs"
SERVER_CPU = "1"
WRK_CPU = "0"


@dataclass(frozen=True)
class Workload:
    name: str
    rows: int
    connections: int


WORKLOADS = [
    Workload("1row-c1", 1, 1),
    Workload("1row-c16", 1, 16),
    Workload("1row-c64", 1, 64),
    Workload("1000row-c4", 1000, 4),
]


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ------------------------------------------------------------------ processes
def session_pids(sid: int) -> list[int]:
    """Every live process of a session (our servers start their own session)."""
    pids = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        # fields: state ppid pgrp session ...
        if int(fields[3]) == sid and fields[0] != "Z":
            pids.append(int(d.name))
    return pids


def descendants(root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(d.name))
    out, todo = {root}, [root]
    while todo:
        for c in children.get(todo.pop(), []):
            if c not in out:
                out.add(c)
                todo.append(c)
    return out


def pss_mb(pid: int) -> tuple[float, int]:
    """PSS summed over the server's process tree (and its session), in MB; process count."""
    pids = descendants(pid) | set(session_pids(pid))
    total_kb, n = 0, 0
    for p in pids:
        try:
            text = Path(f"/proc/{p}/smaps_rollup").read_text()
        except OSError:
            continue
        m = re.search(r"^Pss:\s+(\d+) kB", text, re.M)
        if m:
            total_kb += int(m.group(1))
            n += 1
    return total_kb / 1024, n


class Server:
    def __init__(self, contender: Contender, model: str, tag: str) -> None:
        self.c = contender
        self.model = model
        self.port = free_port()
        self.scratch = WORK / "run" / f"{contender.name}-{model}"
        self.scratch.mkdir(parents=True, exist_ok=True)
        LOGS.mkdir(parents=True, exist_ok=True)
        self.log_path = LOGS / f"{contender.name}-{model}-{tag}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.started = 0.0
        self.protocol = PROTOCOLS[contender.protocol]
        self.url = f"http://127.0.0.1:{self.port}{self.protocol.path(model)}"

    def start(self) -> None:
        env = dict(os.environ)
        env.update({"PYTHONUNBUFFERED": "1"})
        # cold start is measured with bytecode caches, as a deployed server would have them
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env.update(self.c.environ(self.model))
        # as if the contender's virtualenv were activated (MLflow runs `uvicorn` from PATH)
        env["PATH"] = str(Path(self.c.bin("python")).parent) + os.pathsep + env.get("PATH", "")
        env["VIRTUAL_ENV"] = str(Path(self.c.bin("python")).parent.parent)
        argv = ["taskset", "-c", SERVER_CPU, *self.c.argv(self.model, self.port, self.scratch)]
        self._logf = self.log_path.open("wb")
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            argv,
            stdout=self._logf,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=self.scratch,
            start_new_session=True,
        )

    def post(self, rows: list[list[float]], timeout: float = 30.0) -> list[Any]:
        data = json.dumps(self.protocol.body(rows)).encode()
        req = urllib.request.Request(
            self.url, data=data, headers={"Content-Type": "application/json"}, method="POST"
        )
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return self.protocol.answer(json.loads(resp.read()))

    def wait_ready(self, row: list[float], timeout: float) -> float | None:
        """Cold start: process spawn to the first successful prediction (polled every 20 ms)."""
        assert self.proc is not None
        deadline = self.started + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return None
            try:
                self.post([row], timeout=5)
                return time.monotonic() - self.started
            except (OSError, ValueError, KeyError, TypeError, IndexError):
                time.sleep(0.02)
        return None

    def drain(self, row: list[float]) -> None:
        """Wait until requests queued by the last wrk run are served: one probe gets through."""
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError, IndexError):
            self.post([row], timeout=60)
        time.sleep(0.2)

    def stop(self) -> None:
        if self.proc is None:
            return
        pid = self.proc.pid
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            self.proc.wait(timeout=5)
        # stragglers of the session (workers that outlived their parent), by PID
        deadline = time.monotonic() + 5
        while (left := session_pids(pid)) and time.monotonic() < deadline:
            time.sleep(0.1)
        for p in session_pids(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGKILL)
        self._logf.close()
        self.proc = None
        del left

    def tail(self, n: int = 8) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-n:])


# ------------------------------------------------------------------ wrk
def run_wrk(server: Server, wl: Workload, seconds: float) -> dict[str, Any]:
    body_file = MODELS / f"{server.model}_rows{wl.rows}.json"
    script = LUA / f"{server.c.protocol}.lua"
    argv = [
        "taskset",
        "-c",
        WRK_CPU,
        "wrk",
        "-t1",
        f"-c{wl.connections}",
        f"-d{seconds:g}s",
        "--timeout",
        "10s",
        "--latency",
        "-s",
        str(script),
        server.url,
        "--",
        str(body_file),
    ]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
    m = re.search(r"^WRK_JSON (\{.*\})$", out.stdout, re.M)
    if not m:
        return {"error": f"wrk failed: {out.stdout[-300:]} {out.stderr[-300:]}"}
    raw = json.loads(m.group(1))
    non2xx_line = re.search(r"Non-2xx or 3xx responses: (\d+)", out.stdout)
    dur = raw["duration_us"] / 1e6
    ok = raw["requests"] - raw["non2xx"]
    socket_errors = raw["connect"] + raw["read"] + raw["write"] + raw["timeout"]
    return {
        "requests": raw["requests"],
        "req_s": raw["requests"] / dur,
        "ok_req_s": ok / dur,
        "rows_s": ok * wl.rows / dur,
        "p50_ms": raw["p50_us"] / 1000,
        "p90_ms": raw["p90_us"] / 1000,
        "p99_ms": raw["p99_us"] / 1000,
        "max_ms": raw["max_us"] / 1000,
        "non2xx": max(raw["non2xx"], int(non2xx_line.group(1)) if non2xx_line else 0),
        "socket_errors": socket_errors,
        "errors_detail": {k: raw[k] for k in ("connect", "read", "write", "timeout", "status")},
    }


# ------------------------------------------------------------------ correctness
def check_answers(server: Server, doc: dict[str, Any]) -> str | None:
    """None when the answers equal the model's own predict, else what is wrong."""
    for n in (1, 5, 1000):
        rows, want = doc["rows"][:n], doc["predictions"][:n]
        try:
            got = server.post(rows)
        except Exception as e:
            return f"{n}-row request failed: {e!r}"
        if len(got) != len(want):
            return f"{n}-row request: {len(got)} answers for {n} rows"
        bad = [
            i
            for i, (g, w) in enumerate(zip(got, want, strict=True))
            if not isinstance(g, (int, float)) or float(g) != float(w)
        ]
        if bad:
            i = bad[0]
            return (
                f"{n}-row request: {len(bad)} wrong answers, e.g. row {i}: "
                f"{got[i]!r} != {want[i]!r}"
            )
    return None


# ------------------------------------------------------------------ in-process limit
def inprocess(model: str, seconds: float, only: int | None = None) -> dict[str, Any]:
    out = subprocess.run(
        [
            "taskset",
            "-c",
            SERVER_CPU,
            str(ROOT / ".venv/bin/python"),
            str(BENCH / "inprocess.py"),
            model,
            str(seconds),
            *([] if only is None else [str(only)]),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if out.returncode != 0:
        return {"error": out.stderr[-500:]}
    return json.loads(out.stdout)


def paired_limit(model: str, rows: int, seconds: float) -> float | None:
    """The in-process limit (rows/s with orjson) measured now, for a run next to it."""
    out = inprocess(model, seconds, only=rows)
    return None if "error" in out else float(out[str(rows)]["orjson_rows_s"])


def load_floor(model: str) -> float:
    """Seconds for a bare Python process to import the framework and joblib.load the model.

    Every contender pays this before it can answer; a server's cold start above it is the
    server's own cost.
    """
    code = f"import joblib; joblib.load({str(MODELS / f'{model}.joblib')!r})"
    started = time.perf_counter()
    subprocess.run(
        ["taskset", "-c", SERVER_CPU, str(ROOT / ".venv/bin/python"), "-c", code],
        check=True,
        timeout=120,
    )
    return time.perf_counter() - started


def ferry_first_start(model: str, row: list[float], rnd: int, timeout: float) -> float | None:
    """ferry's cold start with an empty cache directory, so no compiled form to reuse.

    The contender proper runs with the default cache, where the first start of a model file
    stored the compiled form of its trees (docs/models.md, "Compiled cache"); a server
    started on a file for the first time, or with --no-compiled-cache, looks like this.
    """
    base = CONTENDERS["ferry"]
    cache = Path(tempfile.mkdtemp(prefix="ferry-bench-cache-"))
    first = dataclasses.replace(
        base, argv=lambda m, p, s: [*base.argv(m, p, s), "--cache-dir", str(cache)]
    )
    srv = Server(first, model, f"r{rnd}-first")
    try:
        srv.start()
        return srv.wait_ready(row, timeout)
    finally:
        srv.stop()
        shutil.rmtree(cache, ignore_errors=True)


def median_inprocess(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    ok = [r for r in rounds if "error" not in r]
    if not ok:
        return rounds[-1] if rounds else {"error": "not measured"}
    return {n: {k: statistics.median(r[n][k] for r in ok) for k in ok[0][n]} for n in ok[0]}


# ------------------------------------------------------------------ machine
def machine() -> dict[str, Any]:
    cpu = ""
    with contextlib.suppress(OSError):
        m = re.search(r"^model name\s*:\s*(.*)$", Path("/proc/cpuinfo").read_text(), re.M)
        cpu = m.group(1) if m else ""
    mem = ""
    with contextlib.suppress(OSError):
        m = re.search(r"^MemTotal:\s+(\d+) kB", Path("/proc/meminfo").read_text(), re.M)
        mem = f"{int(m.group(1)) / 1024 / 1024:.0f} GiB" if m else ""
    wrk_v = subprocess.run(["wrk", "-v"], capture_output=True, text=True)
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory": mem,
        "kernel": platform.release(),
        "os": _os_name(),
        "python": platform.python_version(),
        "wrk": (wrk_v.stdout + wrk_v.stderr).strip().splitlines()[0] if wrk_v else "",
    }


def _os_name() -> str:
    with contextlib.suppress(OSError):
        m = re.search(r'^PRETTY_NAME="(.*)"', Path("/etc/os-release").read_text(), re.M)
        if m:
            return m.group(1)
    return platform.system()


def versions() -> dict[str, dict[str, str]]:
    keys = {
        "flask",
        "gunicorn",
        "fastapi",
        "uvicorn",
        "bentoml",
        "mlflow",
        "litserve",
        "mlserver",
        "mlserver-sklearn",
        "mlserver-xgboost",
        "scikit-learn",
        "xgboost",
        "numpy",
        "joblib",
    }
    out: dict[str, dict[str, str]] = {}
    for f in sorted((BENCH / "requirements").glob("*.txt")):
        pins = {}
        for line in f.read_text().splitlines():
            if "==" in line:
                k, v = line.split("==", 1)
                if k.lower() in keys:
                    pins[k.lower()] = v.strip()
        out[f.stem] = pins
    with contextlib.suppress(Exception):
        import importlib.metadata as md

        libs = ("scikit-learn", "xgboost", "numpy", "uvicorn")
        out["ferry"] = {"ferry": md.version("ferry"), **{k: md.version(k) for k in libs}}
    return out


def ferry_works() -> str | None:
    exe = ROOT / ".venv" / "bin" / "ferry"
    if not exe.exists():
        return f"{exe} not found"
    out = subprocess.run([str(exe), "serve", "--help"], capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        return "`ferry serve --help` fails: " + (out.stderr.strip().splitlines() or ["?"])[-1]
    return None


# ------------------------------------------------------------------ main loop
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smoke run: 1 round, 2 s runs")
    ap.add_argument(
        "--contenders",
        default=",".join(CONTENDERS),
        help="comma-separated, from: " + ",".join(CONTENDERS),
    )
    ap.add_argument("--models", default="rf,xgb")
    ap.add_argument("--workloads", default=",".join(w.name for w in WORKLOADS))
    ap.add_argument("--duration", type=float, default=None, help="seconds per measured run (10)")
    ap.add_argument("--warmup", type=float, default=None, help="seconds of warm-up per run (2)")
    ap.add_argument("--rounds", type=int, default=None, help="interleaved rounds (3)")
    ap.add_argument("--start-timeout", type=float, default=120.0)
    ap.add_argument("--no-docs", action="store_true", help="do not rewrite docs/benchmarks.md")
    args = ap.parse_args()
    duration = args.duration or (2.0 if args.quick else 10.0)
    warmup = args.warmup if args.warmup is not None else (0.5 if args.quick else 2.0)
    rounds = args.rounds or (1 if args.quick else 3)
    models = [m for m in args.models.split(",") if m]
    workloads = [w for w in WORKLOADS if w.name in args.workloads.split(",")]

    if shutil.which("wrk") is None or shutil.which("taskset") is None:
        print("wrk and taskset are needed: run bench/setup.sh", file=sys.stderr)
        return 2
    for m in models:
        if not (MODELS / f"{m}_rows.json").exists():
            print(
                f"model {m} missing: run bench/setup.sh (or .venv/bin/python bench/models.py)",
                file=sys.stderr,
            )
            return 2

    skipped: dict[str, str] = {}
    names = []
    for name in [n for n in args.contenders.split(",") if n]:
        if name not in CONTENDERS:
            print(f"unknown contender {name!r}", file=sys.stderr)
            return 2
        why = CONTENDERS[name].available() or (ferry_works() if name == "ferry" else None)
        if why:
            skipped[name] = why
            log(f"SKIP {name}: {why}")
        else:
            names.append(name)

    # the HTTP ceiling does not depend on the model: measure it once, with the first model
    plan = [
        (m, n) for m in models for n in names if not (CONTENDERS[n].reference and m != models[0])
    ]
    per_pair = len(workloads) * (duration + warmup + 0.5) + 12
    est = rounds * (len(plan) * per_pair + 15 * len(models))
    log(
        f"{len(plan)} contender x model pairs, {len(workloads)} workloads, {rounds} rounds, "
        f"{duration:g} s runs: about {est / 60:.0f} min"
    )

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    result: dict[str, Any] = {
        "timestamp": stamp,
        "command": "bench/setup.sh && .venv/bin/python bench/run.py " + " ".join(sys.argv[1:]),
        "machine": machine(),
        "versions": versions(),
        "config": {
            "duration_s": duration,
            "warmup_s": warmup,
            "rounds": rounds,
            "models": models,
            "workloads": [w.__dict__ for w in workloads],
            "server_cpu": SERVER_CPU,
            "wrk_cpu": WRK_CPU,
        },
        "contenders": {n: CONTENDERS[n].label for n in names},
        "skipped": skipped,
        "failed": {},
        "runs": [],
        "starts": [],
        "inprocess": {},
        "inprocess_rounds": {},
    }
    failed: dict[str, str] = result["failed"]  # "contender/model" -> why
    docs = {m: json.loads((MODELS / f"{m}_rows.json").read_text()) for m in models}
    checked: set[str] = set()
    t_start = time.monotonic()

    for r in range(rounds):
        for m in models:
            # the in-process limit is measured every round too, next to the servers
            log(f"round {r + 1}/{rounds} {m}: in-process limit")
            result["inprocess_rounds"].setdefault(m, []).append(
                inprocess(m, 1.0 if args.quick else 2.0)
            )
            result.setdefault("load_floor_rounds", {}).setdefault(m, []).append(load_floor(m))
            pairs = [n for (mm, n) in plan if mm == m]
            # interleave: rotate the order every round so no contender always goes first
            k = r % len(pairs) if pairs else 0
            for name in pairs[k:] + pairs[:k]:
                key = f"{name}/{m}"
                if key in failed:
                    continue
                c = CONTENDERS[name]
                if name == "ferry":
                    first = ferry_first_start(m, docs[m]["rows"][0], r + 1, args.start_timeout)
                    result.setdefault("first_starts", []).append(
                        {"model": m, "round": r + 1, "cold_start_s": first}
                    )
                    log(f"round {r + 1}/{rounds} {m} ferry: first start {first} s")
                srv = Server(c, m, f"r{r + 1}")
                log(f"round {r + 1}/{rounds} {m} {name}: starting")
                try:
                    srv.start()
                    cold = srv.wait_ready(docs[m]["rows"][0], args.start_timeout)
                    if cold is None:
                        failed[key] = "did not answer a prediction: " + srv.tail(5)
                        log(f"FAIL {key}: no successful prediction\n{srv.tail(10)}")
                        continue
                    if not c.reference and key not in checked:
                        wrong = check_answers(srv, docs[m])
                        if wrong:
                            failed[key] = "wrong answers: " + wrong
                            log(f"FAIL {key}: {wrong}")
                            continue
                        checked.add(key)
                    log(f"  cold start {cold:.2f} s")
                    for wl in workloads:
                        if warmup > 0:
                            run_wrk(srv, wl, warmup)
                            srv.drain(docs[m]["rows"][0])
                        # ferry's many-row runs are bracketed by the in-process limit, each
                        # for half the run's length, on the same core a moment apart
                        paired = name == "ferry" and wl.rows > 1
                        before = paired_limit(m, wl.rows, duration / 2) if paired else None
                        res = run_wrk(srv, wl, duration)
                        srv.drain(docs[m]["rows"][0])
                        if paired:
                            after = paired_limit(m, wl.rows, duration / 2)
                            res["paired_limit_rows_s"] = [before, after]
                        res.update(
                            {
                                "model": m,
                                "contender": name,
                                "round": r + 1,
                                "workload": wl.name,
                                "loadavg": os.getloadavg()[0],
                            }
                        )
                        result["runs"].append(res)
                        if "error" in res:
                            log(f"  {wl.name}: {res['error']}")
                        else:
                            log(
                                f"  {wl.name}: {res['ok_req_s']:.0f} req/s, p50 "
                                f"{res['p50_ms']:.1f} ms, p99 {res['p99_ms']:.1f} ms, "
                                f"non-2xx {res['non2xx']}, socket errors {res['socket_errors']}"
                            )
                    pss, nproc = pss_mb(srv.proc.pid) if srv.proc else (0.0, 0)
                    result["starts"].append(
                        {
                            "model": m,
                            "contender": name,
                            "round": r + 1,
                            "cold_start_s": cold,
                            "pss_mb": pss,
                            "processes": nproc,
                        }
                    )
                    log(f"  PSS {pss:.0f} MB over {nproc} processes")
                finally:
                    srv.stop()

    result["inprocess"] = {m: median_inprocess(rs) for m, rs in result["inprocess_rounds"].items()}
    result["elapsed_s"] = time.monotonic() - t_start
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"{stamp}.json"
    out.write_text(json.dumps(result, indent=1))
    log(f"raw results: {out.relative_to(ROOT)} ({result['elapsed_s'] / 60:.1f} min)")
    summary = report.summarize(result)
    report.print_tables(summary)
    if not args.no_docs:
        path = ROOT / "docs" / "benchmarks.md"
        path.write_text(report.markdown(summary, out.relative_to(ROOT)))
        log(f"report: {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
