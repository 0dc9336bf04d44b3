"""The GPU check's results: gather them (for ``tools/gpu_check.sh``) and write the report's "GPU" section.

    python tools/gpu_report.py path/to/gpu_results.json   # section "GPU" of benchmarks/REPORT.md,
                                                          # and a copy in benchmarks/gpu_results.json
    python tools/gpu_report.py                            # the section again, from that copy (e.g.
                                                          # after `make bench` rewrote REPORT.md)
    python tools/gpu_report.py --collect STATE -o OUT.json [fast.xml ...]   # used by gpu_check.sh

``--collect`` reads what ``tools/gpu_check.sh`` left in its state folder (``meta.txt``: ``key=value``
lines; ``full.tsv``: ``stem<TAB>seconds<TAB>status`` per notebook run in full mode) and nbval's JUnit
files of the fast-mode run, writes the results as JSON and prints a short summary (failing cells with
the end of their tracebacks). Only the standard library: it runs on the GPU machine's bare Python too.

The section sits between ``<!-- gpu:start -->`` and ``<!-- gpu:end -->``; a later run replaces it.
The CPU numbers are the full-mode times that ``benchmarks/bench.py`` keeps in ``benchmarks/results.json``.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REPORT = ROOT / "benchmarks" / "REPORT.md"
BENCH_RESULTS = ROOT / "benchmarks" / "results.json"
GPU_RESULTS = ROOT / "benchmarks" / "gpu_results.json"
START, END = "<!-- gpu:start -->", "<!-- gpu:end -->"
# colour codes, raw or as pytest's JUnit writer escapes them ("#x1B[31m")
ANSI = re.compile(r"(?:\x1b|#x1B)\[[0-9;]*[A-Za-z]")


# --------------------------------------------------------------------------------------------
# Collecting a run's results (on the GPU machine)
# --------------------------------------------------------------------------------------------


def read_meta(text: str) -> dict[str, str]:
    """``key=value`` lines (the first ``=`` splits; blank lines and lines without ``=`` are skipped)."""
    pairs = (line.split("=", 1) for line in text.splitlines() if "=" in line)
    return {key.strip(): value.strip() for key, value in pairs}


def notebook_stem(classname: str, name: str = "") -> str:
    """The notebook of a JUnit test case: nbval's class name is ``notebooks.00_pytorch_basics.ipynb``."""
    text = classname or name
    text = text[: -len(".ipynb")] if text.endswith(".ipynb") else text.split(".ipynb", 1)[0]
    return text.replace("/", ".").rsplit(".", 1)[-1]


def _failure_of(case: ET.Element) -> ET.Element | None:
    return next((child for child in case if child.tag in ("failure", "error")), None)


def junit_results(xml_text: str) -> tuple[dict[str, float], list[dict[str, str]]]:
    """Seconds per notebook (the sum of its cells' times, kernel start included) and failing cells.

    Each failure is ``{"notebook", "cell", "message", "text"}``; ``text`` is the traceback, ANSI-free."""
    seconds: dict[str, float] = {}
    failures = []
    for case in ET.fromstring(xml_text).iter("testcase"):
        stem = notebook_stem(case.get("classname", ""), case.get("name", ""))
        seconds[stem] = seconds.get(stem, 0.0) + float(case.get("time") or 0.0)
        failure = _failure_of(case)
        if failure is not None:
            failures.append({"notebook": stem, "cell": case.get("name", ""),
                             "message": ANSI.sub("", failure.get("message") or "").strip(),
                             "text": ANSI.sub("", failure.text or "").strip()})
    return seconds, failures


def full_rows(tsv_text: str) -> dict[str, dict]:
    """``stem<TAB>seconds<TAB>status`` lines -> ``{stem: {"seconds": s, "status": status}}``."""
    rows = {}
    for line in tsv_text.splitlines():
        if line.strip():
            stem, seconds, status = line.split("\t")
            rows[stem] = {"seconds": round(float(seconds), 1), "status": status}
    return rows


def failure_line(failure: dict[str, str]) -> str:
    """One line per failing cell: notebook, cell and the last line of the error."""
    lines = [line for line in (failure["text"] or failure["message"]).splitlines() if line.strip()]
    return f"{failure['notebook']} {failure['cell']}: {lines[-1].strip() if lines else 'failed'}"[:300]


def build_results(meta: dict[str, str], junit_texts: list[str], full_tsv: str) -> dict:
    """The ``gpu_results.json`` object, from the state files and the fast run's JUnit files."""
    per_notebook: dict[str, float] = {}
    failures: list[dict[str, str]] = []
    for text in junit_texts:
        seconds, failed = junit_results(text)
        per_notebook.update(seconds)
        failures += failed
    cores = meta.get("cpu_cores", "")
    return {
        "device": meta.get("device", ""), "driver": meta.get("driver", ""), "torch": meta.get("torch", ""),
        "torchvision": meta.get("torchvision", ""), "python": meta.get("python", ""),
        "cpu_cores": int(cores) if cores.isdigit() else cores,
        "fast": {"passed": meta.get("fast_passed") == "true", "workers": meta.get("fast_workers", ""),
                 "threads": meta.get("fast_threads", ""),
                 "per_notebook_s": {k: round(v, 1) for k, v in sorted(per_notebook.items())},
                 "failures": [failure_line(f) for f in failures]},
        "full": full_rows(full_tsv), "full_budget_s": meta.get("full_budget_s", ""),
        "date": meta.get("date", ""),
    }


def summary(results: dict, junit_texts: list[str], tail: int = 15) -> str:
    """A short text for the log: fast mode's verdict, each failing cell's traceback end, full-mode rows."""
    fast = results["fast"]
    lines = [f"fast mode: {'passed' if fast['passed'] else 'FAILED'} "
             f"({len(fast['per_notebook_s'])} notebooks, {len(fast['failures'])} failing cells)"]
    for text in junit_texts:
        for failure in junit_results(text)[1]:
            lines += [f"--- {failure['notebook']} {failure['cell']}",
                      *(failure["text"] or failure["message"]).splitlines()[-tail:]]
    lines += [f"full mode {stem}: {row['status']} in {row['seconds']:.0f} s"
              for stem, row in results["full"].items()]
    return "\n".join(lines)


def collect(state: Path, junit_paths: list[Path], out: Path) -> dict:
    """Write ``out`` from the state folder and the JUnit files (missing ones count as empty)."""
    meta = read_meta((state / "meta.txt").read_text(encoding="utf-8"))
    full_tsv = (state / "full.tsv").read_text(encoding="utf-8") if (state / "full.tsv").exists() else ""
    texts = [p.read_text(encoding="utf-8") for p in junit_paths if p.exists() and p.stat().st_size]
    results = build_results(meta, texts, full_tsv)
    out.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    print(summary(results, texts))
    return results


# --------------------------------------------------------------------------------------------
# The report's section (here)
# --------------------------------------------------------------------------------------------


def cpu_full_seconds(bench_results: dict) -> dict[str, float]:
    """Full-mode seconds per notebook stem, from ``benchmarks/results.json``'s ``notebooks`` part."""
    rows = bench_results.get("notebooks", {})
    return {Path(name).stem: row["full"] for name, row in rows.items() if row.get("full") is not None}


def cpu_label(report_text: str) -> str:
    """The CPU line of REPORT.md's "Machine" part (``- CPU: AMD EPYC, 2 logical cores``)."""
    match = re.search(r"^- CPU: (.+)$", report_text, re.M)
    return match.group(1).strip() if match else "the benchmark machine's CPU"


def _seconds(value) -> str:
    return "" if value is None else f"{value:.0f}"


def table_row(stem: str, gpu: dict, cpu_full: dict[str, float]) -> list[str]:
    """One chapter: CPU full, GPU fast, GPU full, GPU full status, speed-up (passed GPU runs only)."""
    full = gpu.get("full", {}).get(stem)
    cpu = cpu_full.get(stem)
    status = full["status"] if full else "not run"
    passed = status == "passed" and full["seconds"] > 0
    speedup = f"{cpu / full['seconds']:.1f}x" if cpu and passed else ""
    gpu_full = (">" if status == "timeout" else "") + _seconds(full["seconds"]) if full else ""
    return [stem, _seconds(cpu), _seconds(gpu.get("fast", {}).get("per_notebook_s", {}).get(stem)),
            gpu_full, status, speedup]


def chapters(gpu: dict, cpu_full: dict[str, float], notebooks: list[str] | None = None) -> list[str]:
    """Every chapter named anywhere: the notebooks given, the CPU results and the GPU results, sorted."""
    names = set(notebooks or []) | set(cpu_full) | set(gpu.get("full", {}))
    return sorted(names | set(gpu.get("fast", {}).get("per_notebook_s", {})))


def _workers(gpu: dict) -> int:
    workers = str(gpu.get("fast", {}).get("workers", ""))
    return int(workers) if workers.isdigit() else 1


def fast_line(gpu: dict) -> str:
    """Whether the fast-mode nbval run passed, with its failing cells."""
    fast = gpu.get("fast", {})
    how = f"{_workers(gpu)} at a time" if _workers(gpu) > 1 else "one at a time"
    head = f"Fast mode (`COURSE_FAST=1`, nbval on every notebook, {how}): "
    if fast.get("passed"):
        return head + "**passed**."
    return "\n".join([head + "**failed**.", *(f"- {failure}" for failure in fast.get("failures", []))])


def _fast_how(gpu: dict) -> str:
    threads = gpu.get("fast", {}).get("threads")
    how = f", {_workers(gpu)} notebooks at a time" if _workers(gpu) > 1 else ""
    return how + (f", {threads} CPU threads each" if threads else "")


def gpu_section(gpu: dict, cpu_full: dict[str, float], cpu: str, notebooks: list[str] | None = None) -> str:
    """The Markdown of the "GPU" section, markers included."""
    rows = [table_row(stem, gpu, cpu_full) for stem in chapters(gpu, cpu_full, notebooks)]
    lines = [START, "## GPU", "",
             f"Measured {gpu.get('date', '?')} by `tools/gpu_check.sh` on {gpu.get('device', '?')} "
             f"(driver {gpu.get('driver', '?')}, {gpu.get('cpu_cores', '?')} CPU cores), torch "
             f"{gpu.get('torch', '?')}, Python {gpu.get('python', '?')}; written by `tools/gpu_report.py`.",
             "", fast_line(gpu), "",
             f"CPU: full mode from part 3 above ({cpu}). GPU fast: the seconds of each notebook's cells in "
             f"the fast-mode run{_fast_how(gpu)}. GPU full: one notebook at a time, the wall time of "
             "`pytest` on it (the kernel's start included: a few seconds that the CPU times leave out), "
             f"in a budget of {gpu.get('full_budget_s') or '?'} s (\">\" marks a run stopped at the "
             "budget's end). Speed-up: CPU full / GPU full.", "",
             "| notebook | CPU full (s) | GPU fast (s) | GPU full (s) | GPU full status | speed-up |",
             "| --- | ---: | ---: | ---: | --- | ---: |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    if gpu.get("notes"):  # what the numbers alone do not say (written into the json by hand)
        lines += ["", *(f"- {note}" for note in gpu["notes"])]
    return "\n".join(lines + [END]) + "\n"


def replace_section(text: str, section: str) -> str:
    """``text`` with its GPU section replaced by ``section``, or with ``section`` appended."""
    start, end = text.find(START), text.find(END)
    if start != -1 and end > start:
        tail = text[end + len(END):].removeprefix("\n")
        return text[:start] + section + tail
    return text.rstrip("\n") + "\n\n" + section


def write_report(results_path: Path, report: Path = REPORT, bench: Path = BENCH_RESULTS,
                 copy_to: Path = GPU_RESULTS) -> str:
    """Write the section into ``report`` and copy the results to ``copy_to``; return the section."""
    gpu = json.loads(results_path.read_text(encoding="utf-8"))
    if results_path.resolve() != copy_to.resolve():
        shutil.copyfile(results_path, copy_to)
    bench_results = json.loads(bench.read_text(encoding="utf-8")) if bench.exists() else {}
    text = report.read_text(encoding="utf-8") if report.exists() else "# Benchmarks\n"
    stems = [p.stem for p in sorted((ROOT / "notebooks").glob("[0-9][0-9]*.ipynb"))]
    section = gpu_section(gpu, cpu_full_seconds(bench_results), cpu_label(text), stems)
    report.write_text(replace_section(text, section), encoding="utf-8")
    return section


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", type=Path,
                        help="gpu_results.json (default: benchmarks/gpu_results.json); with --collect: "
                             "the fast run's JUnit files")
    parser.add_argument("--collect", type=Path, metavar="STATE", help="gpu_check.sh's state folder")
    parser.add_argument("-o", "--output", type=Path, help="with --collect: the JSON file to write")
    args = parser.parse_args(argv)
    if args.collect:
        if not args.output:
            parser.error("--collect needs -o OUT.json")
        collect(args.collect, args.paths, args.output)
        return
    if len(args.paths) > 1:
        parser.error("give one gpu_results.json")
    print(write_report(args.paths[0] if args.paths else GPU_RESULTS))


if __name__ == "__main__":
    sys.exit(main())
