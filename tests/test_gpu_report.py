"""tools/gpu_report.py: the GPU check's results gathered from its files, and the report's "GPU" section.

No GPU needed: a small fake results dict and a fake JUnit file stand in for a run."""

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import gpu_report  # noqa: E402

JUNIT = """<?xml version="1.0" encoding="utf-8"?><testsuites name="pytest tests"><testsuite name="pytest">
<testcase classname="notebooks.00_pytorch_basics.ipynb" name="Cell 0" time="2.5" />
<testcase classname="notebooks.00_pytorch_basics.ipynb" name="Cell 1" time="0.5" />
<testcase classname="notebooks.04_cnn.ipynb" name="Cell 0" time="3.0" />
<testcase classname="notebooks.04_cnn.ipynb" name="Cell 7" time="1.25">
<failure message="#x1B[91mNotebook cell execution failed#x1B[0m">#x1B[94mCell 7: Cell execution failed
Traceback:
#x1B[31mRuntimeError#x1B[39m: CUDA error: out of memory</failure></testcase>
</testsuite></testsuites>"""

GPU = {
    "device": "NVIDIA H100 80GB HBM3", "driver": "580.159.04", "torch": "2.11.0+cu130", "python": "3.12.3",
    "cpu_cores": 16, "date": "2026-11-26T10:00:00Z", "full_budget_s": "300",
    "fast": {"passed": False, "workers": "6", "per_notebook_s": {"00_pytorch_basics": 3.0, "04_cnn": 4.25},
             "failures": ["04_cnn Cell 7: RuntimeError: CUDA error: out of memory"]},
    "full": {"00_pytorch_basics": {"seconds": 4.0, "status": "passed"},
             "04_cnn": {"seconds": 20.0, "status": "failed"},
             "05_rnn": {"seconds": 250.0, "status": "timeout"}},
}
CPU_FULL = {"00_pytorch_basics": 12.0, "04_cnn": 102.0, "05_rnn": 230.0, "06_attention": 208.0}


def test_meta_lines_split_at_the_first_equals_sign():
    meta = gpu_report.read_meta("device=cpu (AMD EPYC)\n\nnoise\ndriver=a=b\n")
    assert meta == {"device": "cpu (AMD EPYC)", "driver": "a=b"}


def test_the_notebook_of_a_test_case_is_the_stem_of_nbvals_class_name():
    assert gpu_report.notebook_stem("notebooks.10b_bert_fine_tuning.ipynb") == "10b_bert_fine_tuning"
    assert gpu_report.notebook_stem("", "notebooks/05_rnn.ipynb::Cell 3") == "05_rnn"


def test_junit_gives_seconds_per_notebook_and_failing_cells_without_colour_codes():
    seconds, failures = gpu_report.junit_results(JUNIT)
    assert seconds == {"00_pytorch_basics": 3.0, "04_cnn": 4.25}
    [failure] = failures
    assert (failure["notebook"], failure["cell"]) == ("04_cnn", "Cell 7")
    assert failure["message"] == "Notebook cell execution failed"
    assert "#x1B" not in failure["text"]
    assert failure["text"].endswith("RuntimeError: CUDA error: out of memory")
    assert gpu_report.failure_line(failure) == "04_cnn Cell 7: RuntimeError: CUDA error: out of memory"


def test_results_are_built_from_the_state_files_and_the_junit_files():
    meta = {"device": "NVIDIA H100", "driver": "580", "torch": "2.11.0", "python": "3.12.3",
            "cpu_cores": "16", "fast_passed": "false", "fast_workers": "6", "date": "2026-11-26"}
    full_tsv = "00_pytorch_basics\t4.04\tpassed\n05_rnn\t250\ttimeout\n"
    results = gpu_report.build_results(meta, [JUNIT], full_tsv)
    assert results["cpu_cores"] == 16 and results["device"] == "NVIDIA H100"
    assert results["fast"]["passed"] is False
    assert results["fast"]["per_notebook_s"] == {"00_pytorch_basics": 3.0, "04_cnn": 4.2}
    assert results["fast"]["failures"] == ["04_cnn Cell 7: RuntimeError: CUDA error: out of memory"]
    assert results["full"] == {"00_pytorch_basics": {"seconds": 4.0, "status": "passed"},
                               "05_rnn": {"seconds": 250.0, "status": "timeout"}}


def test_collect_writes_the_json_and_prints_the_failing_cells(tmp_path, capsys):
    (tmp_path / "meta.txt").write_text("device=cpu\nfast_passed=true\ncpu_cores=2\n")
    (tmp_path / "fast.xml").write_text(JUNIT)
    out = tmp_path / "gpu_results.json"
    gpu_report.main(["--collect", str(tmp_path), "-o", str(out), str(tmp_path / "fast.xml"),
                     str(tmp_path / "fast_late.xml")])  # the second JUnit file is missing: no matter
    assert json.loads(out.read_text())["full"] == {}
    printed = capsys.readouterr().out
    assert "--- 04_cnn Cell 7" in printed and "out of memory" in printed


def test_a_passed_run_gets_a_speed_up():
    assert gpu_report.table_row("00_pytorch_basics", GPU, CPU_FULL) == [
        "00_pytorch_basics", "12", "3", "4", "passed", "3.0x"]


def test_failed_and_timed_out_runs_get_no_speed_up_and_a_timeout_is_a_lower_bound():
    assert gpu_report.table_row("04_cnn", GPU, CPU_FULL) == ["04_cnn", "102", "4", "20", "failed", ""]
    assert gpu_report.table_row("05_rnn", GPU, CPU_FULL) == ["05_rnn", "230", "", ">250", "timeout", ""]


def test_chapters_missing_on_either_side_are_listed_with_blank_cells():
    row = gpu_report.table_row("06_attention", GPU, CPU_FULL)
    assert row == ["06_attention", "208", "", "", "not run", ""]
    assert gpu_report.table_row("10_bert", GPU, {}) == ["10_bert", "", "", "", "not run", ""]
    assert gpu_report.chapters(GPU, CPU_FULL, ["10_bert"]) == [
        "00_pytorch_basics", "04_cnn", "05_rnn", "06_attention", "10_bert"]


def test_the_fast_mode_line_says_passed_or_lists_the_failures():
    assert "**failed**" in gpu_report.fast_line(GPU)
    assert "- 04_cnn Cell 7: RuntimeError: CUDA error: out of memory" in gpu_report.fast_line(GPU)
    passed = {**GPU, "fast": {**GPU["fast"], "passed": True, "failures": []}}
    line = gpu_report.fast_line(passed)
    assert "**passed**" in line and "6 at a time" in line and "04_cnn" not in line
    assert "one at a time" in gpu_report.fast_line({"fast": {"passed": True, "workers": "1"}})


def test_cpu_times_and_label_come_from_the_benchmark_files():
    bench = {"notebooks": {"04_cnn.ipynb": {"fast": 21.0, "full": 102.0}}}
    assert gpu_report.cpu_full_seconds(bench) == {"04_cnn": 102.0}
    assert gpu_report.cpu_full_seconds({}) == {}
    label = gpu_report.cpu_label("## Machine\n\n- CPU: AMD EPYC, 2 logical cores\n")
    assert label == "AMD EPYC, 2 logical cores"
    assert gpu_report.cpu_label("# Benchmarks\n") == "the benchmark machine's CPU"


def test_the_section_is_appended_once_then_replaced_not_duplicated():
    report = "# Benchmarks\n\n## 5. Threads\n\ntext\n"
    first = gpu_report.replace_section(report, gpu_report.gpu_section(GPU, CPU_FULL, "AMD EPYC"))
    assert first.startswith(report) and first.count(gpu_report.START) == 1
    newer = {**GPU, "date": "2026-12-01"}
    section = gpu_report.gpu_section(newer, CPU_FULL, "AMD EPYC")
    second = gpu_report.replace_section(first + "after\n", section)
    assert second.count(gpu_report.START) == 1 and second.count(gpu_report.END) == 1
    assert "2026-12-01" in second and "2026-11-26T10:00:00Z" not in second
    assert second.startswith(report) and second.endswith(gpu_report.END + "\nafter\n")


def test_write_report_writes_the_section_and_copies_the_results(tmp_path):
    results, report, bench = tmp_path / "gpu.json", tmp_path / "REPORT.md", tmp_path / "results.json"
    results.write_text(json.dumps(GPU))
    report.write_text("# Benchmarks\n\n- CPU: AMD EPYC, 2 logical cores\n")
    bench.write_text(json.dumps({"notebooks": {f"{k}.ipynb": {"full": v} for k, v in CPU_FULL.items()}}))
    gpu_report.write_report(results, report, bench, copy_to=tmp_path / "copy.json")
    gpu_report.write_report(results, report, bench, copy_to=tmp_path / "copy.json")
    text = report.read_text()
    assert text.count("## GPU") == 1 and "| 00_pytorch_basics | 12 | 3 | 4 | passed | 3.0x |" in text
    assert "(AMD EPYC, 2 logical cores)" in text
    assert json.loads((tmp_path / "copy.json").read_text()) == GPU
