"""The course's benchmarks, in one run: ``make bench`` writes ``benchmarks/REPORT.md``.

1. Training throughput, LeNet on Fashion-MNIST, d2l's ``train_ch6`` set-up (LeNet with sigmoids and
   average pooling, batch 256, lr 0.9, SGD, the full training set, one epoch including the test-set
   evaluation): our loader + ``helpers.training.fit``, a bare hand-written PyTorch loop over the same
   loader, and ``d2l.train_ch6`` with ``d2l.load_data_fashion_mnist`` reading our shipped files.
   Runs alternate (ours, bare, d2l, ours, ...) and the report gives medians.
2. Data loading: one pass over the training set with our loader, and with d2l's (its default of 4
   workers, and 0 workers); and the first load of the files (checksum, decompression, decoding).
3. The course's time budget: every notebook executed in fast and in full mode (a fresh kernel each),
   and in fast mode again while another process keeps one CPU core busy (a spinning loop, as
   ``yes > /dev/null``): a learner's laptop always has something else running.
4. Widget latency: after a notebook's full-mode run, each control of each widget is moved one step
   and the widget's callback time is read (``explorer.seconds``).
5. Threads: training steps with 1 thread, 2 threads and 2 threads with OpenMP's passive waiting, on
   an idle machine and with one core kept busy (``benchmarks/threads.py``): the measurements behind
   the thread count that ``helpers.setup()`` chooses.

d2l 1.0.3 comes from ``make env`` (installed with ``--no-deps`` next to the course; see the Makefile).
Nothing here downloads: d2l's loader finds the shipped Fashion-MNIST files, whose md5 values are the
official ones, so torchvision uses them as "already downloaded". Usage::

    .venv/bin/python benchmarks/bench.py [--repeats 3] [--skip-notebooks | --only-notebooks]
                                         [--notebooks 01_linear_regression 05_rnn] [--no-busy]

The raw numbers are kept in ``benchmarks/results.json`` and every run replaces only what it measured
(sections 1-2 and 5, or the notebooks it timed), each with its date; the report is written from the whole
file. So after changing one chapter, ``make bench BENCH_ARGS="--only-notebooks --notebooks 05_rnn"``
refreshes its row in minutes instead of re-running the hour-long whole; on a shared machine each
part can wait for a quiet moment.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import io
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("MPLBACKEND", "Agg")
# d2l's defaults warn on a 2-core machine (4 loader workers) and in its plot of a 1-epoch run.
warnings.filterwarnings("ignore", message="This DataLoader will create")
warnings.filterwarnings("ignore", message="Attempting to set identical low and high xlims")

import torch  # noqa: E402
from torch import nn  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from helpers import datasets, sources  # noqa: E402
from helpers.training import accuracy, fit  # noqa: E402

BATCH_SIZE, LR, NUM_TRAIN = 256, 0.9, 60_000
REPORT = ROOT / "benchmarks" / "REPORT.md"
RESULTS = ROOT / "benchmarks" / "results.json"


# --------------------------------------------------------------------------------------------
# The machine
# --------------------------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_lines() -> list[str]:
    import d2l

    return [
        f"- CPU: {cpu_model()}, {os.cpu_count()} logical cores",
        f"- torch {torch.__version__}, {torch.get_num_threads()} intra-op threads",
        f"- Python {platform.python_version()}",
        f"- d2l {d2l.__version__} (installed with --no-deps; see the Makefile)",
    ]


# --------------------------------------------------------------------------------------------
# 1. LeNet throughput
# --------------------------------------------------------------------------------------------


def lenet() -> nn.Module:
    """d2l's LeNet: sigmoid activations and average pooling, as in ``train_ch6``'s chapter."""
    return nn.Sequential(
        nn.Conv2d(1, 6, kernel_size=5, padding=2), nn.Sigmoid(), nn.AvgPool2d(kernel_size=2, stride=2),
        nn.Conv2d(6, 16, kernel_size=5), nn.Sigmoid(), nn.AvgPool2d(kernel_size=2, stride=2),
        nn.Flatten(), nn.Linear(16 * 5 * 5, 120), nn.Sigmoid(), nn.Linear(120, 84), nn.Sigmoid(),
        nn.Linear(84, 10),
    )


def xavier(module: nn.Module) -> None:
    if isinstance(module, (nn.Linear, nn.Conv2d)):
        nn.init.xavier_uniform_(module.weight)


def fresh_lenet() -> nn.Module:
    torch.manual_seed(0)
    net = lenet()
    net.apply(xavier)  # what train_ch6 does, so all three start alike
    return net


@contextlib.contextmanager
def d2l_data_folder():
    """A working folder whose ``../data/FashionMNIST/raw`` holds our files, as d2l expects."""
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "data" / "FashionMNIST" / "raw"
        raw.mkdir(parents=True)
        for path in (sources.REPO_DATA_DIR / "fashion-mnist").glob("*.gz"):
            shutil.copy(path, raw / path.name)
        work = Path(tmp) / "work"
        work.mkdir()
        before = Path.cwd()
        os.chdir(work)
        try:
            yield
        finally:
            os.chdir(before)


def d2l_loaders(num_workers: int | None = None):
    from d2l import torch as d2l

    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        train_iter, test_iter = d2l.load_data_fashion_mnist(BATCH_SIZE)
    if num_workers is not None:
        train_iter = torch.utils.data.DataLoader(train_iter.dataset, BATCH_SIZE, shuffle=True,
                                                 num_workers=num_workers)
    return train_iter, test_iter


def run_ours(train_iter, test_iter) -> float:
    net = fresh_lenet()
    start = time.perf_counter()
    fit(net, nn.CrossEntropyLoss(), torch.optim.SGD(net.parameters(), lr=LR), train_iter, 1,
        val_iter=test_iter, metrics={"acc": accuracy}, live=False, progress=False, verbose=False)
    return time.perf_counter() - start


def run_bare(train_iter, test_iter) -> float:
    net = fresh_lenet()
    loss_fn, optimizer = nn.CrossEntropyLoss(), torch.optim.SGD(net.parameters(), lr=LR)
    start = time.perf_counter()
    net.train()
    for X, y in train_iter:
        loss = loss_fn(net(X), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    net.eval()
    correct = 0
    with torch.no_grad():
        for X, y in test_iter:
            correct += (net(X).argmax(dim=1) == y).sum().item()
    return time.perf_counter() - start


def run_d2l(train_iter, test_iter) -> float:
    from d2l import torch as d2l

    net = fresh_lenet()
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):  # its Animator prints figure reprs in a script
        d2l.train_ch6(net, train_iter, test_iter, 1, LR, torch.device("cpu"))
    seconds = time.perf_counter() - start
    import matplotlib.pyplot as plt

    plt.close("all")
    return seconds


def throughput(repeats: int) -> dict[str, list[float]]:
    ours_iters = datasets.load_fashion_mnist(BATCH_SIZE, fast=False)
    with d2l_data_folder():
        d2l_iters = d2l_loaders()
        runs = {"ours": (run_ours, ours_iters), "bare": (run_bare, ours_iters), "d2l": (run_d2l, d2l_iters)}
        times = {name: [] for name in runs}
        for repeat in range(repeats):
            for name, (run, iters) in runs.items():
                seconds = run(*iters)
                times[name].append(seconds)
                print(f"  LeNet epoch {repeat + 1}/{repeats} {name}: {seconds:.1f} s", flush=True)
    return times


# --------------------------------------------------------------------------------------------
# 2. Data loading
# --------------------------------------------------------------------------------------------


def one_pass(loader) -> float:
    start = time.perf_counter()
    count = sum(len(y) for _, y in loader)
    assert count == NUM_TRAIN, count
    return time.perf_counter() - start


def data_loading(repeats: int) -> dict[str, list[float]]:
    times = {"ours: first load (sha256, gunzip, decode)": [], "ours: one pass": [],
             "d2l: one pass, 4 workers (its default)": [], "d2l: one pass, 0 workers": []}
    for _ in range(repeats):
        datasets._fashion_mnist_cached.cache_clear()
        sources._verified.clear()
        start = time.perf_counter()
        train_iter, _ = datasets.load_fashion_mnist(BATCH_SIZE, fast=False)
        times["ours: first load (sha256, gunzip, decode)"].append(time.perf_counter() - start)
        times["ours: one pass"].append(one_pass(train_iter))
    with d2l_data_folder():
        for _ in range(repeats):
            times["d2l: one pass, 4 workers (its default)"].append(one_pass(d2l_loaders()[0]))
            times["d2l: one pass, 0 workers"].append(one_pass(d2l_loaders(num_workers=0)[0]))
    return times


# --------------------------------------------------------------------------------------------
# 3 and 4. Notebooks and widgets
# --------------------------------------------------------------------------------------------

WIDGET_PROBE = r'''
import gc as _gc, json as _json, math as _math
import ipywidgets as _w
from helpers.widgets import PlotExplorer as _PlotExplorer

def _one_step(control):
    """A neighbouring value of a control: the next option, one slider step, the other boolean."""
    value = control.value
    if isinstance(value, tuple):  # multiple selections: no single "next" value
        return None
    if isinstance(value, bool):
        return not value
    options = getattr(control, "options", None)
    if options:
        values = [o[1] if isinstance(o, tuple) else o for o in options]
        i = values.index(value) if value in values else 0
        return values[i + 1] if i + 1 < len(values) else values[i - 1] if i > 0 else None
    if isinstance(control, _w.FloatLogSlider):
        factor = control.base ** control.step
        fits = _math.log(value * factor, control.base) <= control.max + 1e-9
        return value * factor if fits else value / factor
    step = getattr(control, "step", None)
    if isinstance(value, (int, float)) and step:
        top = getattr(control, "max", None)  # a FloatText has a step but no bounds
        return value + step if top is None or value + step <= top else value - step
    return None

def _explorers():
    """Every live PlotExplorer (gc also lists dead weak proxies, whose isinstance check raises)."""
    found = []
    for obj in _gc.get_objects():
        try:
            if isinstance(obj, _PlotExplorer):
                found.append(obj)
        except ReferenceError:
            pass
    return found

_rows = []
for _explorer in _explorers():
    for _name, _control in _explorer.controls.items():
        _new = _one_step(_control)
        if _new is None:
            continue
        _old = _control.value
        _control.value = _new
        _rows.append({"widget": type(_explorer).__name__ + "(" + ", ".join(_explorer.controls) + ")",
                      "control": _name, "seconds": _explorer.seconds})
        _control.value = _old
    if callable(getattr(_explorer, "press", None)):  # a widget that trains when its button is pressed
        _explorer.press()
        _rows.append({"widget": type(_explorer).__name__ + "(" + ", ".join(_explorer.controls) + ")",
                      "control": "train button (one press)", "seconds": _explorer.seconds})
print("WIDGET_LATENCY " + _json.dumps(_rows))
'''


def run_notebook(path: Path, fast: bool, probe_widgets: bool) -> tuple[float, list[dict]]:
    """Execute a notebook in a fresh kernel; return its wall time and, optionally, widget latencies."""
    import nbformat
    from nbclient import NotebookClient

    os.environ["COURSE_FAST"] = "1" if fast else "0"
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(notebook, timeout=1800, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    latencies = []
    with client.setup_kernel():
        start = time.perf_counter()
        for index, cell in enumerate(notebook.cells):
            client.execute_cell(cell, index)
        seconds = time.perf_counter() - start
        if probe_widgets:
            probe = nbformat.v4.new_code_cell(WIDGET_PROBE)
            notebook.cells.append(probe)
            client.execute_cell(probe, len(notebook.cells) - 1)
            for output in probe.outputs:
                for line in output.get("text", "").splitlines():
                    if line.startswith("WIDGET_LATENCY "):
                        latencies = json.loads(line.split(" ", 1)[1])
    os.environ.pop("COURSE_FAST")
    return seconds, latencies


SPINNER = "import time\nend = time.time() + 7200\nwhile time.time() < end:\n    pass\n"


@contextlib.contextmanager
def one_core_busy():
    """Keep one CPU core busy in another process (a spinning loop) while the block runs."""
    spinner = subprocess.Popen([sys.executable, "-c", SPINNER])
    try:
        time.sleep(0.5)
        yield
    finally:
        spinner.kill()
        spinner.wait()


def notebook_budget(names: list[str] | None, save=None, busy: bool = True) -> dict[str, dict]:
    """Time each notebook (fast; fast with one core busy; full with the widget probe).

    Rows are keyed by file name. ``save(rows)`` is called after each notebook, so an interrupted
    run keeps what it measured."""
    paths = sorted((ROOT / "notebooks").glob("[0-9][0-9]*.ipynb"))
    if names:
        unknown = set(names) - {p.stem for p in paths}
        if unknown:
            raise SystemExit(f"no notebook named {sorted(unknown)} in notebooks/ "
                             "(give file names without .ipynb, e.g. 01_linear_regression)")
        paths = [p for p in paths if p.stem in names]
    rows = {}
    for path in paths:
        fast_s, _ = run_notebook(path, fast=True, probe_widgets=False)
        busy_s = None
        if busy:
            with one_core_busy():
                busy_s, _ = run_notebook(path, fast=True, probe_widgets=False)
        full_s, latencies = run_notebook(path, fast=False, probe_widgets=True)
        busy_note = f", fast with a busy core {busy_s:.0f} s" if busy_s is not None else ""
        print(f"  {path.name}: fast {fast_s:.0f} s{busy_note}, full {full_s:.0f} s, "
              f"{len(latencies)} widget controls", flush=True)
        rows[path.name] = {"fast": fast_s, "fast_busy": busy_s, "full": full_s, "widgets": latencies,
                           "measured": _today()}
        if save:
            save(rows)
    return rows


def thread_measurements(rounds: int) -> dict:
    """Section 5: ``benchmarks/threads.py`` in a subprocess (it starts one process per configuration)."""
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "threads.py"), "--rounds", str(rounds)],
                         capture_output=True, text=True, check=True)
    return {**json.loads(out.stdout), "measured": _today()}


# --------------------------------------------------------------------------------------------
# The report
# --------------------------------------------------------------------------------------------


def _median(values: list[float]) -> float:
    return statistics.median(values)


def _today() -> str:
    return datetime.date.today().isoformat()


def load_results(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def report(results: dict) -> str:
    """The Markdown report, from everything stored in ``results`` (parts never measured are named)."""
    lines = ["# Benchmarks", "", "Written by `make bench` (`benchmarks/bench.py`) from "
             "`benchmarks/results.json`; each part gives the date it was measured.", "",
             "## Machine", "", *machine_lines(), ""]
    lines += ["## 1. Training throughput: LeNet on Fashion-MNIST, one epoch", ""]
    if "throughput" in results:
        part = results["throughput"]
        times = part["seconds"]
        med = {name: _median(v) for name, v in times.items()}
        lines += [f"d2l's `train_ch6` set-up: sigmoid LeNet, batch {BATCH_SIZE}, lr {LR}, SGD, "
                  f"all {NUM_TRAIN:,} training images, one epoch including the evaluation on the 10,000 "
                  "test images; the same "
                  f"initial weights for all three. Medians of {part['repeats']} alternating runs, measured "
                  f"{part['measured']}.", "",
                  "| loop | data | wall time per epoch (s) | examples/s | all runs (s) |",
                  "| --- | --- | ---: | ---: | --- |"]
        labels = {"ours": ("`helpers.training.fit`", "`helpers.datasets.load_fashion_mnist`"),
                  "bare": ("bare hand-written loop", "`helpers.datasets.load_fashion_mnist`"),
                  "d2l": ("`d2l.train_ch6`", "`d2l.load_data_fashion_mnist` (4 workers)")}
        for name, (loop, data) in labels.items():
            runs = ", ".join(f"{t:.1f}" for t in times[name])
            lines.append(f"| {loop} | {data} | {med[name]:.1f} | {NUM_TRAIN / med[name]:,.0f} | {runs} |")
        # Ratios per round (the three loops run back to back), then their median: a drift in the
        # machine's speed during the benchmark hits both sides of a ratio alike.
        vs_d2l = _median([d / o for d, o in zip(times["d2l"], times["ours"], strict=True)])
        vs_bare = _median([o / b for o, b in zip(times["ours"], times["bare"], strict=True)])
        lines += ["", f"- ours / d2l examples per second: **{vs_d2l:.2f}x**",
                  f"- ours / bare wall time: **{vs_bare:.3f}** (the loop's overhead)",
                  "", "(Both ratios are medians of the per-round ratios: each round runs the three loops "
                  "back to back, so a change in the machine's speed between rounds cancels.)", ""]
        lines += ["## 2. Data loading: one pass over the 60,000 training images", "",
                  f"Medians of {part['repeats']} runs, measured {part['measured']}.", "",
                  "| loader | median (s) | all runs (s) |", "| --- | ---: | --- |"]
        for name, values in results["loading"].items():
            lines.append(f"| {name} | {_median(values):.3f} | {', '.join(f'{v:.3f}' for v in values)} |")
    else:
        lines += ["Not measured yet (nor part 2, data loading): `make bench BENCH_ARGS=--skip-notebooks`."]
    existing = [p.name for p in sorted((ROOT / "notebooks").glob("[0-9][0-9]*.ipynb"))]
    rows = {name: row for name, row in results.get("notebooks", {}).items() if name in existing}
    lines += ["", "## 3. The course's time budget", "",
              "Each notebook in a fresh kernel (cells only, kernel start excluded), one at a time; "
              "\"one core busy\" runs fast mode again while another process keeps one CPU core busy "
              "(a spinning loop), with the threads `helpers.setup()` chooses.", "",
              "| notebook | fast mode (s) | fast, one core busy (s) | busy / idle | full mode (s) "
              "| measured |",
              "| --- | ---: | ---: | ---: | ---: | --- |"]
    for name in existing:
        row = rows.get(name)
        if row is None:
            lines.append(f"| {name} | not measured | | | not measured | |")
            continue
        busy = row.get("fast_busy")
        busy_cells = f"{busy:.0f} | {busy / row['fast']:.2f}" if busy else "not measured |"
        lines.append(f"| {name} | {row['fast']:.0f} | {busy_cells} | {row['full']:.0f} | {row['measured']} |")
    busy_rows = [r for r in rows.values() if r.get("fast_busy")]
    busy_total = f"**{sum(r['fast_busy'] for r in busy_rows):.0f}**" if busy_rows else ""
    lines.append(f"| **total** | **{sum(r['fast'] for r in rows.values()):.0f}** | {busy_total} | | "
                 f"**{sum(r['full'] for r in rows.values()):.0f}** | |")
    if rows:
        slowest = max(rows, key=lambda name: rows[name]["fast"])
        lines += ["", f"Slowest in fast mode: {slowest} ({rows[slowest]['fast']:.0f} s)."]
    if busy_rows:
        worst = max((n for n in rows if rows[n].get("fast_busy")),
                    key=lambda n: rows[n]["fast_busy"] / rows[n]["fast"])
        ratio = rows[worst]["fast_busy"] / rows[worst]["fast"]
        lines += [f"Largest slow-down with one core busy: {worst} ({ratio:.2f}x; the goal is at most 2x)."]
    lines += ["", "## 4. Widget latency", "",
              "After each notebook's full-mode run, every control of every widget moved one step "
              "(next option, one slider step); the time of the widget's callback.", "",
              "| notebook | widget | control | callback (s) |", "| --- | --- | --- | ---: |"]
    for name in existing:
        for widget in rows.get(name, {}).get("widgets", []):
            lines.append(f"| {name} | {widget['widget']} | {widget['control']} | {widget['seconds']:.3f} |")
    lines += ["", "## 5. Threads: training steps on an idle machine and with one core busy", ""]
    if "threads" in results:
        part = results["threads"]
        models = list(part["idle"]["1 thread"])
        lines += [f"`benchmarks/threads.py`: each configuration in a fresh process, medians of "
                  f"{part['rounds']} alternating rounds, milliseconds per training step, measured "
                  f"{part['measured']}. \"One core busy\": another process spins on one core.", "",
                  "| machine | threads | " + " | ".join(models) + " |",
                  "| --- | --- | " + " | ".join("---:" for _ in models) + " |"]
        for load in ("idle", "one core busy"):
            for config, times in part[load].items():
                lines.append(f"| {load} | {config} | " + " | ".join(f"{times[m]:.2f}" for m in models) + " |")
        lines += ["", "Two threads win on an idle machine; with one core busy, two spinning threads "
                  "lose to one thread, and passive waiting fixes that but costs the idle machine. "
                  "Hence `helpers.setup()` counts the cores other processes keep busy and uses the rest "
                  "(`helpers/config.py`)."]
    else:
        lines += ["Not measured yet: `make bench BENCH_ARGS=--skip-notebooks`."]
    return "\n".join(lines) + "\n"


def with_gpu_section(text: str, report_path: Path) -> str:
    """``text`` followed by the GPU section of the report now at ``report_path``, if it has one:
    ``tools/gpu_report.py`` writes that section from a run on a lent GPU, which ``make bench``
    (on this machine) cannot repeat, so a new report keeps it."""
    old = report_path.read_text(encoding="utf-8") if report_path.exists() else ""
    start, end = old.find("<!-- gpu:start -->"), old.find("<!-- gpu:end -->")
    if start == -1 or end < start:
        return text
    return text.rstrip("\n") + "\n\n" + old[start:end + len("<!-- gpu:end -->")] + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--skip-notebooks", action="store_true", help="only sections 1 and 2")
    which.add_argument("--only-notebooks", action="store_true", help="only sections 3 and 4")
    parser.add_argument("--notebooks", nargs="*", help="notebook stems to time (default: all)")
    parser.add_argument("--no-busy", action="store_true",
                        help="skip the fast-mode runs with one core kept busy (section 3)")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--report", type=Path, default=REPORT)
    args = parser.parse_args()
    results = load_results(args.results)
    if not args.only_notebooks:
        print("1. LeNet throughput", flush=True)
        seconds = throughput(args.repeats)
        print("2. data loading", flush=True)
        results["loading"] = data_loading(args.repeats)
        results["throughput"] = {"seconds": seconds, "repeats": args.repeats, "measured": _today()}
        print("5. threads", flush=True)
        results["threads"] = thread_measurements(args.repeats)
    def save(rows=None):
        if rows:
            results.setdefault("notebooks", {}).update(rows)
        args.results.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
        text = with_gpu_section(report(results), args.report)
        args.report.write_text(text, encoding="utf-8")
        return text

    if not args.skip_notebooks:
        print("3-4. notebooks and widgets", flush=True)
        notebook_budget(args.notebooks, save=save, busy=not args.no_busy)
    print(save())


if __name__ == "__main__":
    main()
