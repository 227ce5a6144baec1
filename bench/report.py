"""Turn raw benchmark results (bench/results/<timestamp>.json) into tables.

.venv/bin/python bench/report.py bench/results/<timestamp>.json   # print + rewrite docs
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
MODEL_LABEL = {
    "rf": "RandomForest (iris, 100 trees)",
    "xgb": "XGBoost (synthetic, 100 trees, depth 6)",
}
WORKLOAD_LABEL = {
    "1row-c1": "single-row requests, concurrency 1",
    "1row-c16": "single-row requests, concurrency 16",
    "1row-c64": "single-row requests, concurrency 64",
    "1000row-c4": "1000-row requests, concurrency 4",
}


def _med(xs: list[float]) -> float | None:
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def _paired(run: dict[str, Any]) -> tuple[float, float] | None:
    """(ratio, limit) of a run bracketed by the in-process limit (run.paired_limit)."""
    limits = [x for x in run.get("paired_limit_rows_s") or [] if x]
    if len(limits) != 2:
        return None
    limit = statistics.mean(limits)
    return run["rows_s"] / limit, limit


def paired_text(f: dict[str, Any]) -> str | None:
    """ "96% (rounds 91%, 101%) of the limit measured next to each run (204-216k rows/s)"."""
    if not f.get("paired"):
        return None
    ratios = [p[0] for p in f["paired"]]
    limits = [p[1] for p in f["paired"]]
    rounds = ", ".join(f"{x:.0%}" for x in ratios)
    span = f"{min(limits) / 1000:.0f}-{max(limits) / 1000:.0f}k"
    return (
        f"{statistics.median(ratios):.0%} (rounds {rounds}) of the limit measured right "
        f"before and after each run ({span} rows/s)"
    )


def summarize(result: dict[str, Any]) -> dict[str, Any]:
    models = result["config"]["models"]
    wls = [w["name"] for w in result["config"]["workloads"]]
    names = list(result["contenders"])
    refs = {"noop"}
    table: dict[str, dict[str, dict[str, dict[str, Any]]]] = {}
    for m in models:
        table[m] = {}
        for wl in wls:
            row: dict[str, dict[str, Any]] = {}
            for n in names:
                runs = [
                    r
                    for r in result["runs"]
                    if r["model"] == m
                    and r["workload"] == wl
                    and r["contender"] == n
                    and "error" not in r
                ]
                if not runs:
                    continue
                paired = [_paired(r) for r in runs if _paired(r) is not None]
                row[n] = {
                    "paired": paired,
                    "req_s": _med([r["ok_req_s"] for r in runs]),
                    "rows_s": _med([r["rows_s"] for r in runs]),
                    "p50_ms": _med([r["p50_ms"] for r in runs]),
                    "p99_ms": _med([r["p99_ms"] for r in runs]),
                    "non2xx": sum(r["non2xx"] for r in runs),
                    "socket_errors": sum(r["socket_errors"] for r in runs),
                    "rounds": len(runs),
                }
            peers = {n: v for n, v in row.items() if n not in refs and not n.startswith("ferry")}
            best = max(peers, key=lambda n: peers[n]["req_s"]) if peers else None
            ratio = None
            if best and "ferry" in row and peers[best]["req_s"]:
                ratio = row["ferry"]["req_s"] / peers[best]["req_s"]
            table[m][wl] = {"rows": row, "best_peer": best, "ferry_ratio": ratio}
    starts: dict[str, dict[str, dict[str, Any]]] = {}
    for m in models:
        starts[m] = {}
        for n in names:
            ss = [s for s in result["starts"] if s["model"] == m and s["contender"] == n]
            if ss:
                starts[m][n] = {
                    "cold_start_s": _med([s["cold_start_s"] for s in ss]),
                    "pss_mb": _med([s["pss_mb"] for s in ss]),
                    "processes": ss[-1]["processes"],
                }
    return {
        "result": result,
        "table": table,
        "starts": starts,
        "targets": targets(result, table, starts),
    }


def targets(
    result: dict[str, Any], table: dict[str, Any], starts: dict[str, Any]
) -> list[tuple[str, str, bool | None]]:
    out: list[tuple[str, str, bool | None]] = []

    def cell(m: str, wl: str) -> dict[str, Any] | None:
        return table.get(m, {}).get(wl)

    c = cell("rf", "1row-c64")
    if c:
        ratio, f = c["ferry_ratio"], c["rows"].get("ferry")
        out.append(
            (
                "single-row RF c64 >= 4x best peer",
                f"{ratio:.2f}x vs {c['best_peer']}" if ratio else "n/a",
                None if ratio is None else ratio >= 4,
            )
        )
        out.append(
            (
                "single-row RF c64 p99 < 100 ms",
                f"{f['p99_ms']:.1f} ms" if f else "n/a",
                None if not f else f["p99_ms"] < 100,
            )
        )
    c = cell("xgb", "1row-c64")
    if c:
        ratio = c["ferry_ratio"]
        out.append(
            (
                "single-row XGB c64 >= 8x best peer",
                f"{ratio:.2f}x vs {c['best_peer']}" if ratio else "n/a",
                None if ratio is None else ratio >= 8,
            )
        )
    for m in table:
        c = cell(m, "1000row-c4")
        lim = result["inprocess"].get(m, {}).get("1000", {})
        if c and lim:
            f = c["rows"].get("ferry")
            frac = f["rows_s"] / lim["orjson_rows_s"] if f else None
            text = f"{frac:.0%} of {lim['orjson_rows_s'] / 1000:.0f}k rows/s" if frac else "n/a"
            if f and f["paired"]:
                # judged against the limit measured in the same minute; the round-start
                # limit (minutes away, on a host whose speed drifts) is shown beside it
                paired = statistics.median(p[0] for p in f["paired"])
                text = f"{paired_text(f)}; {text} measured at the round's start"
                frac = paired
            out.append(
                (
                    f"1000-row {m.upper()} >= 90% of in-process limit with JSON",
                    text,
                    None if frac is None else frac >= 0.9,
                )
            )
    floors = result.get("load_floor_rounds", {})
    for m in starts:
        f = starts[m].get("ferry")
        floor = statistics.median(floors[m]) if floors.get(m) else None
        floor_text = f" (import + joblib.load alone: {floor:.2f} s)" if floor else ""
        out.append(
            (
                f"cold start < 2 s ({m})",
                f"{f['cold_start_s']:.2f} s{floor_text}" if f else "n/a",
                None if not f else f["cold_start_s"] < 2,
            )
        )
        first = first_start(result, m)
        if first is not None:
            out.append(
                (
                    f"cold start < 2 s ({m}), first start on the file (empty compiled cache)",
                    f"{first:.2f} s",
                    first < 2,
                )
            )
        fl = starts[m].get("flask")
        # Compared at the same process count as Flask + Gunicorn's 2 workers when measured.
        two = starts[m].get("ferry-2w")
        p, which = (two, "ferry --workers 2") if two else (f, "ferry")
        out.append(
            (
                f"ferry PSS <= Flask + Gunicorn's ({m})",
                f"{which} {p['pss_mb']:.0f} MB vs {fl['pss_mb']:.0f} MB" if p and fl else "n/a",
                None if not (p and fl) else p["pss_mb"] <= fl["pss_mb"],
            )
        )
    return out


def first_start(result: dict[str, Any], model: str) -> float | None:
    """Median cold start of ferry with an empty cache dir (see run.ferry_first_start)."""
    found = [
        s["cold_start_s"]
        for s in result.get("first_starts", [])
        if s["model"] == model and s["cold_start_s"] is not None
    ]
    return _med(found) if found else None


# ------------------------------------------------------------------ formatting
def _n(x: float | None) -> str:
    if x is None:
        return "-"
    if x >= 100_000:
        return f"{x / 1000:.0f}k"
    if x >= 10_000:
        return f"{x / 1000:.1f}k"
    if x >= 100:
        return f"{x:.0f}"
    return f"{x:.1f}"


def _ms(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:.0f}" if x >= 100 else f"{x:.1f}" if x >= 1 else f"{x:.2f}"


def _label(result: dict[str, Any], n: str) -> str:
    return result["contenders"].get(n, n)


def print_tables(s: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    result = s["result"]
    con = Console(width=160)
    for m, per_wl in s["table"].items():
        t = Table(title=f"{MODEL_LABEL.get(m, m)}: req/s (p99 ms), median of rounds")
        t.add_column("contender")
        for wl in per_wl:
            t.add_column(wl, justify="right")
        t.add_column("cold start", justify="right")
        t.add_column("PSS MB", justify="right")
        for n in result["contenders"]:
            cells = []
            for wl, c in per_wl.items():
                v = c["rows"].get(n)
                if not v:
                    cells.append("-")
                    continue
                err = v["non2xx"] + v["socket_errors"]
                txt = f"{_n(v['req_s'])} ({_ms(v['p99_ms'])})"
                if wl.startswith("1000"):
                    txt = f"{_n(v['rows_s'])} rows/s ({_ms(v['p99_ms'])})"
                cells.append(txt + (f" [red]{err} err[/red]" if err else ""))
            st = s["starts"].get(m, {}).get(n)
            if not st and all(c == "-" for c in cells):
                why = result["failed"].get(f"{n}/{m}") or result["skipped"].get(n)
                if why:
                    cells = [f"[red]{why[:40]}[/red]"] + ["-"] * (len(cells) - 1)
            t.add_row(
                n,
                *cells,
                f"{st['cold_start_s']:.2f} s" if st else "-",
                f"{st['pss_mb']:.0f}" if st else "-",
            )
        t.add_row(
            "ferry ÷ best peer",
            *[
                f"{c['ferry_ratio']:.2f}x ({c['best_peer']})" if c["ferry_ratio"] else "-"
                for c in per_wl.values()
            ],
            "",
            "",
        )
        con.print(t)
    lim = Table(title="In-process limit (rows/s, one process on one core)")
    for col in ("model", "rows/call", "predict", "+ orjson", "+ json"):
        lim.add_column(col, justify="right")
    for m, d in result["inprocess"].items():
        for n, v in d.items() if "error" not in d else []:
            lim.add_row(m, n, _n(v["predict_rows_s"]), _n(v["orjson_rows_s"]), _n(v["json_rows_s"]))
    con.print(lim)
    tg = Table(title="Targets")
    for col in ("target", "measured", "met"):
        tg.add_column(col)
    for name, val, ok in s["targets"]:
        tg.add_row(name, val, "n/a" if ok is None else ("yes" if ok else "[red]no[/red]"))
    con.print(tg)


def _load(r: dict[str, Any]) -> str:
    xs = [x["loadavg"] for x in r["runs"] if "loadavg" in x]
    return f"median {statistics.median(xs):.1f}, max {max(xs):.1f}" if xs else "not recorded"


def markdown(s: dict[str, Any], raw_path: Path) -> str:
    r = s["result"]
    mc = r["machine"]
    cfg = r["config"]
    L: list[str] = []
    L += [
        "# Benchmarks",
        "",
        "ferry side by side with the servers a user would pick instead, all in one run on",
        "the same machine. The machine is shared and noisy: read the ratios, not the absolute",
        "figures. Method (see `bench/README.md`): wrk pinned to core 0, the server pinned to",
        "core 1, each contender from its own virtualenv with pinned versions",
        "(`bench/requirements/`), 2 workers where it has the notion, stopped by PID after its",
        "runs. ferry runs as a user starts it: its default is one worker per usable core,",
        "which on the one pinned core is one worker; `ferry --workers 2` is ferry with the",
        "peers' worker count. The ratios and targets use the default.",
        "",
        f"- Run: {r['timestamp']}, {cfg['rounds']} round(s) interleaved across contenders, "
        f"{cfg['duration_s']:g} s per run after {cfg['warmup_s']:g} s of warm-up; medians of "
        f"rounds. Total {r.get('elapsed_s', 0) / 60:.0f} min.",
        f"- Machine: {mc['cpu']}, {mc['cores']} cores, {mc['memory']}, {mc['os']}, "
        f"kernel {mc['kernel']}, Python {mc['python']}, {mc['wrk']}.",
        f"- Command: `{r['command'].strip()}`",
        f"- Load average (1 min) seen during the runs: {_load(r)}; above 2 means other work",
        "  shared the 2 cores and the figures are depressed, unevenly across contenders.",
        f"- Raw results: `{raw_path}` (not committed).",
        "",
    ]
    if r["skipped"] or r["failed"]:
        L += ["**Not measured in this run:**", ""]
        for n, why in r["skipped"].items():
            L.append(f"- {n}: skipped, {why}")
        for k, why in r["failed"].items():
            L.append(f"- {k}: failed, {why.splitlines()[0][:300]}")
        L.append("")
    L += ["## Targets", "", "| target | measured | met |", "| --- | --- | --- |"]
    for name, val, ok in s["targets"]:
        L.append(f"| {name} | {val} | {'n/a' if ok is None else ('yes' if ok else '**no**')} |")
    L.append("")
    for m, per_wl in s["table"].items():
        L += [f"## {MODEL_LABEL.get(m, m)}", ""]
        for wl, c in per_wl.items():
            L += [
                f"### {WORKLOAD_LABEL.get(wl, wl)}",
                "",
                "| contender | req/s | rows/s | p50 ms | p99 ms | non-2xx | socket errors |",
                "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
            ]
            for n in r["contenders"]:
                v = c["rows"].get(n)
                if not v:
                    continue
                name = f"**{_label(r, n)}**" if n == "ferry" else _label(r, n)
                L.append(
                    f"| {name} | {_n(v['req_s'])} | {_n(v['rows_s'])} | {_ms(v['p50_ms'])} | "
                    f"{_ms(v['p99_ms'])} | {v['non2xx']} | {v['socket_errors']} |"
                )
            if c["ferry_ratio"]:
                L += [
                    "",
                    f"ferry ÷ best peer ({_label(r, c['best_peer'])}): **{c['ferry_ratio']:.2f}x**",
                ]
            elif c["best_peer"]:
                L += ["", f"Best peer: {_label(r, c['best_peer'])}; ferry not measured."]
            if wl.startswith("1000") and c["rows"].get("ferry"):
                lim = r["inprocess"].get(m, {}).get("1000")
                if lim:
                    f = c["rows"]["ferry"]["rows_s"]
                    L.append("")
                    L.append(
                        f"ferry at {f / lim['orjson_rows_s']:.0%} of the in-process limit "
                        f"with orjson ({_n(lim['orjson_rows_s'])} rows/s), "
                        f"{f / lim['json_rows_s']:.0%} of it with the stdlib json, "
                        f"{f / lim['predict_rows_s']:.0%} of `predict` alone "
                        "(those three measured at the start of each round)."
                    )
                    paired = paired_text(c["rows"]["ferry"])
                    if paired:
                        L += ["", f"Against the orjson limit measured next to it: {paired}."]
            L.append("")
        L += [
            "### Cold start and memory",
            "",
            "Cold start: process spawn to the first successful prediction (polled every 20 ms).",
            "PSS: summed over all the server's processes, after the load runs.",
            "",
            "| contender | cold start s | PSS MB | processes |",
            "| --- | ---: | ---: | ---: |",
        ]
        for n in r["contenders"]:
            st = s["starts"].get(m, {}).get(n)
            if st:
                L.append(
                    f"| {_label(r, n)} | {st['cold_start_s']:.2f} | {st['pss_mb']:.0f} | "
                    f"{st['processes']} |"
                )
            first = first_start(r, m) if n == "ferry" else None
            if first is not None:
                L.append(f"| ferry, first start on the file (empty cache) | {first:.2f} | | |")
        L.append("")
    L += [
        "## In-process limit",
        "",
        "The model's own `predict` on the same rows in one process pinned to the server core,",
        "alone and with the JSON decode + encode a server has to do (rows/s), at the start of",
        "each round (median below). A server that runs the trees in a faster runtime than the",
        "model's own `predict`, or decodes faster than orjson, can go above it. The 1000-row",
        "targets compare ferry with the orjson limit measured right before and right after each",
        "of its 1000-row runs instead (bench/README.md), as the host's speed drifts over minutes.",
        "",
        "| model | rows per call | predict | + orjson | + stdlib json |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for m, d in r["inprocess"].items():
        if "error" in d:
            L.append(f"| {m} | error | | | |")
            continue
        for n, v in d.items():
            L.append(
                f"| {m} | {n} | {_n(v['predict_rows_s'])} | {_n(v['orjson_rows_s'])} | "
                f"{_n(v['json_rows_s'])} |"
            )
    L += ["", "## Versions", "", "| environment | pinned |", "| --- | --- |"]
    for env, pins in r["versions"].items():
        L.append(f"| {env} | {', '.join(f'{k} {v}' for k, v in sorted(pins.items()))} |")
    L += [
        "",
        "The no-op endpoint is the HTTP ceiling (it does not depend on the model, so it runs",
        "with the first model only). Errors are summed over rounds; everything else is the",
        "median of rounds.",
        "",
    ]
    return "\n".join(L)


def main() -> int:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else max((BENCH / "results").glob("*.json"))
    s = summarize(json.loads(path.read_text()))
    print_tables(s)
    if "--no-docs" not in sys.argv:
        raw = path.resolve().relative_to(ROOT) if path.resolve().is_relative_to(ROOT) else path
        (ROOT / "docs" / "benchmarks.md").write_text(markdown(s, raw))
    return 0


if __name__ == "__main__":
    sys.exit(main())
