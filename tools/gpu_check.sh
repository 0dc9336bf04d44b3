#!/usr/bin/env bash
# The course on a lent GPU machine, in one command: every notebook in fast mode under nbval (they
# must pass), then as many notebooks in full mode as a time budget allows (their wall times).
#
#   bash tools/gpu_check.sh [FULL_BUDGET_S] [NOTEBOOKS]
#
# FULL_BUDGET_S  seconds for the full-mode phase (default 300).
# NOTEBOOKS      the full-mode order: stems or paths, separated by commas or spaces, e.g.
#                "04_cnn,05_rnn" (default: every notebook, sorted).
#
# Run from anywhere (it works in the repository's root). Writes into $OUT (default ./.gpu-out):
# gpu_check.log (everything printed), gpu_results.json (tools/gpu_report.py turns it into a part of
# benchmarks/REPORT.md), fast.xml and fast_late.xml (nbval's JUnit files of the fast-mode run).
# gpu_results.json is rewritten after each phase and each full-mode notebook, so a run cut off keeps
# what it measured. Exits non-zero when anything failed.
#
# The GPU machine has no network and no Jupyter stack (its Python 3.12 has torch, pytest,
# pytest-xdist, attrs, coverage, packaging, psutil, pygments, python-dateutil, typing-extensions):
# the wheels in .whl/ are installed with --target into a folder put on PYTHONPATH, unless nbval & co.
# already import. .whl/ is ignored (.git/info/exclude: /.whl/); fill it here, where PyPI is reached:
#
#   bash tools/gpu_check.sh --wheels      # 28 wheels, about 4 MB, for CPython 3.12 on x86-64 Linux
#
# They are nbval's, ipykernel's and ipywidgets' requirements that the machine lacks, less what the
# imports survive without: debugpy (the debugger), jedi and parso (completion), widgetsnbextension
# and jupyterlab_widgets (the browser's side of the widgets).
#
# Environment:
#   GPU_CHECK_DEVICE=cpu       dry run here: COURSE_DEVICE=cpu, no nvidia-smi (default cuda)
#   GPU_CHECK_NOTEBOOKS="..."  limit the notebook set (paths or stems, both phases)
#   GPU_CHECK_WHEELS=DIR       where the wheels are (default .whl)
#   GPU_CHECK_SITE=DIR         where they are installed (default /tmp/site)
#   GPU_CHECK_WORKERS=N        pytest-xdist workers of the fast run (default 6, at most one per notebook)
#   GPU_CHECK_FAST_TIMEOUT=S   the fast run's limit (default 300)
#   GPU_CHECK_DEADLINE=S       no full-mode run goes past S seconds after the start (default 560:
#                              the device tool stops a command at 600)
#   COURSE_THREADS             torch's CPU threads in the notebooks; the fast run's default is
#                              the cores divided by the workers (several kernels run at once)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
OUT=${OUT:-$ROOT/.gpu-out}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
DEVICE=${GPU_CHECK_DEVICE:-cuda}
WHEELS=${GPU_CHECK_WHEELS:-$ROOT/.whl}
SITE=${GPU_CHECK_SITE:-/tmp/site}
FAST_TIMEOUT=${GPU_CHECK_FAST_TIMEOUT:-300}
DEADLINE=${GPU_CHECK_DEADLINE:-560}
STATE=$(mktemp -d)
JUNITS=("$OUT/fast.xml" "$OUT/fast_late.xml")
# A notebook that reads what another one writes runs after it (chapter 10b loads chapter 10's BERT
# checkpoint, notebooks/checkpoints/bert_wikitext2_{fast,full}.pt): "late:early" pairs.
AFTER=("10b_bert_fine_tuning:10_bert")
WHEEL_PINS=(nbval==0.11.0 ipykernel==7.4.0 ipython==9.18.1 ipython_pygments_lexers==1.1.1 ipywidgets==8.1.9
    jupyter_client==8.10.0 jupyter_core==5.9.1 nbformat==5.11.1 fastjsonschema==2.22.3 jsonschema==4.26.0
    jsonschema-specifications==2025.9.1 referencing==0.37.0 rpds-py==2026.9.1 traitlets==5.16.1
    pyzmq==27.3.0 tornado==6.6.1 comm==0.2.3 matplotlib-inline==0.2.2 nest-asyncio2==1.7.4
    platformdirs==4.14.8 pexpect==4.9.0 ptyprocess==0.7.0 prompt_toolkit==3.0.53 stack_data==0.6.3
    asttokens==3.0.2 executing==2.3.0 pure_eval==0.2.4)
export PYTHONUNBUFFERED=1
T0=$(date +%s)

log() { printf '\n=== %s (%ss) ===\n' "$*" "$(($(date +%s) - T0))"; }
meta() { printf '%s=%s\n' "$1" "$2" >>"$STATE/meta.txt"; }
stem() { local name=${1##*/}; printf '%s' "${name%.ipynb}"; }
path_of() { case $1 in *.ipynb) printf '%s' "$1" ;; *) printf 'notebooks/%s.ipynb' "$1" ;; esac; }

results() {  # (re)write $OUT/gpu_results.json from the state so far; print the summary
    python3 tools/gpu_report.py --collect "$STATE" -o "$OUT/gpu_results.json" "${JUNITS[@]}"
}

machine_info() {
    log "1. machine"
    local driver=none
    if [ "$DEVICE" = cuda ]; then
        nvidia-smi || echo "nvidia-smi failed"
        driver=$(nvidia-smi --query-gpu=driver_version --format=csv,noheader 2>/dev/null | head -1 || true)
    fi
    meta driver "${driver:-unknown}"
    meta cpu_cores "$(nproc)"
    meta date "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "nproc: $(nproc)"
    if ! GPU_CHECK_DEVICE=$DEVICE python3 - <<'EOF' | tee -a "$STATE/meta.txt"
import os, platform, torch, torchvision
print(f"python={platform.python_version()}")
print(f"torch={torch.__version__}")
print(f"torchvision={torchvision.__version__}")
if os.environ.get("GPU_CHECK_DEVICE", "cuda") == "cuda":
    print("device=" + (torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CUDA NOT AVAILABLE"))
else:
    model = [line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")]
    print(f"device=cpu ({model[0] if model else platform.machine()})")
EOF
    then
        echo "FAIL: python3 could not report torch's versions and the device"
        return 1
    fi
    echo "python3: $(command -v python3)"
    python3 -m pip list 2>/dev/null | grep -iE '^(torch|torchvision|numpy|matplotlib|pillow|pytest|pytest-xdist) ' || true
}

install_wheels() {
    log "2. Jupyter stack"
    local check="import nbval, ipykernel, ipywidgets, nbformat, jupyter_client"
    if python3 -c "$check" 2>/dev/null; then
        echo "nbval, ipykernel, ipywidgets, nbformat and jupyter_client import already: no wheels installed"
    else
        local wheels=("$WHEELS"/*.whl)
        echo "installing ${#wheels[@]} wheels from $WHEELS into $SITE"
        python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
            --target "$SITE" "${wheels[@]}" || { echo "FAIL: the wheels did not install"; return 1; }
        export PYTHONPATH=$SITE${PYTHONPATH:+:$PYTHONPATH}
    fi
    export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$ROOT
    echo "PYTHONPATH=$PYTHONPATH"
    python3 -c "$check; print('nbval', nbval.__version__ if hasattr(nbval, '__version__') else '?', \
'| ipykernel', ipykernel.__version__, '| ipywidgets', ipywidgets.__version__, \
'| nbformat', nbformat.__version__, '| jupyter_client', jupyter_client.__version__)" || { echo "FAIL: $check"; return 1; }
}

check_setup() {
    log "3. helpers.setup() with COURSE_DEVICE=$DEVICE"
    export COURSE_DEVICE=$DEVICE
    local line
    line=$(python3 -c "import helpers; helpers.setup()" 2>&1) || true
    echo "$line"
    if ! grep -q "device $DEVICE" <<<"$line"; then
        echo "FAIL: the set-up line does not say 'device $DEVICE'"
        return 1
    fi
}

notebook_set() {  # the notebooks of both phases, one path a line
    if [ -n "${GPU_CHECK_NOTEBOOKS:-}" ]; then
        for name in ${GPU_CHECK_NOTEBOOKS//,/ }; do path_of "$name"; echo; done
    else
        ls notebooks/*.ipynb
    fi
}

fast_run() {  # junit file, COURSE_THREADS, extra pytest options, --, notebooks
    local junit=$1 threads=$2 extra=() rc=0
    shift 2
    while [ "$1" != -- ]; do extra+=("$1"); shift; done
    shift
    echo "--- pytest on $*"
    COURSE_FAST=1 COURSE_THREADS=$threads timeout -s INT -k 30 "$FAST_TIMEOUT" \
        python3 -m pytest "$@" -p no:cacheprovider --nbval-lax --nbval-current-env \
        --nbval-cell-timeout=600 "${extra[@]}" --junitxml="$junit" -q -ra || rc=$?
    echo "pytest exit $rc"
    [ "$rc" -eq 124 ] && echo "FAIL: the fast run passed its ${FAST_TIMEOUT} s limit"
    return $rc
}

fast_mode() {  # $@: the notebooks
    log "4. fast mode: nbval on $# notebooks"
    local early=() late=() nb pair stems=" ${*##*/} "
    for nb in "$@"; do
        local is_late=0
        for pair in "${AFTER[@]}"; do
            if [ "$(stem "$nb")" = "${pair%%:*}" ] && [[ $stems == *" ${pair##*:}.ipynb "* ]]; then is_late=1; fi
        done
        if [ $is_late = 1 ]; then late+=("$nb"); else early+=("$nb"); fi
    done
    local workers=${GPU_CHECK_WORKERS:-6} parallel=()
    if [ "$workers" -gt "${#early[@]}" ]; then workers=${#early[@]}; fi
    if [ "$workers" -gt 0 ] && python3 -c "import xdist" 2>/dev/null; then
        parallel=(-n "$workers" --dist loadfile)
    else
        workers=1
        echo "no pytest-xdist: the notebooks run one after another"
    fi
    local threads=${COURSE_THREADS:-$(($(nproc) / workers > 0 ? $(nproc) / workers : 1))}
    meta fast_workers "$workers"
    meta fast_threads "$threads"
    echo "workers: $workers, COURSE_THREADS=$threads; after the others: ${late[*]:-none}"
    local rc=0
    if [ "${#early[@]}" -gt 0 ]; then fast_run "${JUNITS[0]}" "$threads" "${parallel[@]}" -- "${early[@]}" || rc=$?; fi
    if [ "${#late[@]}" -gt 0 ]; then fast_run "${JUNITS[1]}" "$threads" -- "${late[@]}" || rc=$?; fi
    if [ $rc -eq 0 ]; then meta fast_passed true; else meta fast_passed false; fi
    return $rc
}

full_mode() {  # $1: budget (s); then the notebooks in order
    local budget=$1 start
    shift
    start=$(date +%s)
    meta full_budget_s "$budget"
    log "5. full mode: $# notebooks in a budget of $budget s"
    : >"$STATE/full.tsv"
    local nb rc=0 any_failed=0
    for nb in "$@"; do
        local now left
        now=$(date +%s)
        left=$((budget - (now - start)))
        [ $((DEADLINE - (now - T0))) -lt $left ] && left=$((DEADLINE - (now - T0)))
        if [ "$left" -lt 10 ]; then
            echo "budget used: $(stem "$nb") and the rest not run"
            break
        fi
        echo "--- $(stem "$nb") (at most $left s)"
        local t1 t2 status
        t1=$(date +%s.%N)
        rc=0
        COURSE_FAST=0 timeout -s INT -k 20 "$left" python3 -m pytest "$nb" -p no:cacheprovider -q -ra || rc=$?
        t2=$(date +%s.%N)
        case $rc in
            0) status=passed ;;
            124 | 137) status=timeout ;;
            *) status=failed; any_failed=1 ;;
        esac
        printf '%s\t%s\t%s\n' "$(stem "$nb")" "$(python3 -c "print($t2 - $t1)")" "$status" >>"$STATE/full.tsv"
        echo "$(stem "$nb"): $status"
        results >/dev/null || true
    done
    return $any_failed
}

make_wheels() {  # here, with network: fill $WHEELS with the wheels for the GPU machine's Python 3.12
    local platforms=() n
    for n in 2_28 2_27 2_26 2_17; do platforms+=(--platform "manylinux_${n}_x86_64"); done
    platforms+=(--platform manylinux2014_x86_64 --platform manylinux1_x86_64)
    rm -rf "$WHEELS"
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        "${platforms[@]}" -d "$WHEELS" "${WHEEL_PINS[@]}"
    # wcwidth's pure-Python wheel: a third of the size of its compiled one
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation py \
        --platform any -d "$WHEELS" wcwidth==0.9.4
    ls -l "$WHEELS"
    du -sh "$WHEELS"
}

main() {
    local budget=${1:-300} order=${2:-} failed=0 nbs full=()
    [[ $budget =~ ^[0-9]+$ ]] || { echo "FULL_BUDGET_S must be a number of seconds, got '$budget'"; return 2; }
    echo "gpu_check: device $DEVICE, full-mode budget ${budget}s, out $OUT"
    : >"$STATE/meta.txt"
    # (errexit does not reach into main, which runs left of a ||: each step says whether it failed)
    if ! machine_info || ! install_wheels || ! check_setup; then
        meta fast_passed false
        results || true
        echo "GPU CHECK: FAILED before the notebooks ran"
        return 1
    fi
    mapfile -t nbs < <(notebook_set)
    if [ -n "$order" ]; then
        for name in ${order//,/ }; do full+=("$(path_of "$name")"); done
    else
        full=("${nbs[@]}")
    fi
    fast_mode "${nbs[@]}" || failed=1
    results >/dev/null || true
    full_mode "$budget" "${full[@]}" || failed=1
    log "6. results: $OUT/gpu_results.json"
    results || failed=1
    cat "$OUT/gpu_results.json"
    echo
    if [ $failed = 0 ]; then echo "GPU CHECK: PASSED"; else echo "GPU CHECK: FAILED"; fi
    return $failed
}

if [ "${1:-}" = --wheels ]; then
    rm -rf "$STATE"
    make_wheels
    exit
fi
rm -f "$OUT/gpu_check.log" "$OUT/gpu_results.json" "${JUNITS[@]}"
status=0
main "$@" 2>&1 | tee "$OUT/gpu_check.log" || status=$?
rm -rf "$STATE"
exit "$status"
