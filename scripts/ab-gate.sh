#!/usr/bin/env bash
# The A/B gate of a pull request, as the GitHub Action (action.yml) runs it, and as anyone can
# run it locally from an app's checkout:
#
#   CB_SCENARIO=examples/orders/scenario.toml CB_BASE_REF=origin/main scripts/ab-gate.sh
#
# 1. checks the base out into a git worktree beside the head (this checkout, left as it is);
# 2. installs connbench, and each side into its own virtualenv where connbench can serve an app
#    from another interpreter (else the head's requirements beside connbench: said in the log);
# 3. runs base and head in ONE connbench run, interleaved round by round, and judges head
#    against base with the scenario's [gate] (or CB_FAIL_ON);
# 4. writes the Markdown verdict to $GITHUB_STEP_SUMMARY (when set), the result's JSON and
#    HTML into CB_OUT, and verdict=, result=, html= to $GITHUB_OUTPUT (when set);
# 5. exits with the verdict: 0 pass, 1 regression (or a side that failed), 5 inconclusive
#    (the sequential gate ran out of rounds), 2 bad input, anything else: connbench's error.
#
# Inputs (environment; the action maps its inputs onto these, never into the script's text):
#   CB_SCENARIO   the app's scenario file (one [[app]]: request, SQL, [gate]), from the root;
#                 read from the base's checkout (from the head's when the base has none)
#   CB_BASE_REF   the base: a commit, branch or tag (fetched from origin when not present)
#   CB_APP        optional: which [[app]] of the scenario (when it has several)
#   CB_IMPORT     optional: MODULE:ATTR overriding the scenario's app
#   CB_FAIL_ON    optional: gate thresholds, space-separated (throughput:10% p99:20%), each
#                 replacing the scenario's [gate] entry for its metric
#   CB_ROUNDS     the round budget (default 10; the sequential gate needs 5 or more at alpha
#                 0.05, and adds rounds only until it decides)
#   CB_SLICES     turns a side in each round (default 8; 1: each side after the other): both
#                 sides up at once, the load alternating between them (connbench run
#                 --slices), which cancels most of a busy runner's noise; fewer, or none,
#                 when the scenario cannot run in turns (scripts/ab_scenario.py says why)
#   CB_REQUIREMENTS  each side's requirements file, from its root (default requirements.txt;
#                 without one, the root's pyproject.toml or setup.py is installed)
#   CB_INSTALL    auto (default) or none: use the connbench on PATH (or CB_CONNBENCH) and the
#                 environment it runs in, install nothing (a local run, the tests)
#   CB_CONNBENCH  optional: the connbench command to use (else installed from CB_SOURCE)
#   CB_SOURCE     where connbench is installed from (default: this script's repository)
#   CB_OUT        where the result goes (default: connbench-ab, under the current directory)
#   CB_WORK       where the scratch directory is made (default: $RUNNER_TEMP, else $TMPDIR or
#                 /tmp); it is removed at the end with the base's worktree
set -euo pipefail

die() {
    echo "ab-gate: error: $*" >&2
    exit 2
}

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
head_root="$(pwd)"
scenario="${CB_SCENARIO:-}"
base_ref="${CB_BASE_REF:-}"
rounds="${CB_ROUNDS:-10}"
slices="${CB_SLICES:-8}"
requirements="${CB_REQUIREMENTS:-requirements.txt}"
install="${CB_INSTALL:-auto}"
source_dir="${CB_SOURCE:-$(dirname "$here")}"
out="${CB_OUT:-connbench-ab}"

[[ -n "$scenario" ]] || die "CB_SCENARIO: give the app's scenario file"
[[ -f "$scenario" ]] || die "CB_SCENARIO: no such file: $scenario"
[[ -n "$base_ref" ]] || die "CB_BASE_REF: give the base to compare with (a commit or branch)"
if ! [[ "$rounds" =~ ^[0-9]{1,4}$ ]] || ((10#$rounds < 2)); then
    die "CB_ROUNDS: expected a whole number >= 2, got '$rounds'"
fi
rounds=$((10#$rounds))
if ! [[ "$slices" =~ ^[0-9]{1,4}$ ]] || ((10#$slices < 1)); then
    die "CB_SLICES: expected a whole number >= 1, got '$slices'"
fi
slices=$((10#$slices))
[[ "$install" == auto || "$install" == none ]] || die "CB_INSTALL: expected auto or none, got '$install'"
git -C "$head_root" rev-parse --is-inside-work-tree >/dev/null 2>&1 || die "not inside a git checkout: $head_root"

scratch="${CB_WORK:-${RUNNER_TEMP:-${TMPDIR:-/tmp}}}"
[[ -d "$scratch" ]] || die "CB_WORK: no such directory: $scratch"
work="$(mktemp -d "$scratch/connbench-ab.XXXXXX")" # private (0700), and ours alone to remove
base_root="$work/base"
# shellcheck disable=SC2329 # run by the trap below
cleanup() {
    git -C "$head_root" worktree remove --force "$base_root" >/dev/null 2>&1 || true
    git -C "$head_root" worktree prune >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

# --- 1. the base, beside the head ------------------------------------------------------------
if ! base_commit="$(git -C "$head_root" rev-parse --verify --quiet "${base_ref}^{commit}")"; then
    echo "ab-gate: fetching $base_ref from origin" >&2
    git -C "$head_root" fetch --quiet --no-tags origin "$base_ref" 2>/dev/null ||
        die "CB_BASE_REF: cannot find or fetch '$base_ref'"
    base_commit="$(git -C "$head_root" rev-parse --verify 'FETCH_HEAD^{commit}')"
fi
head_commit="$(git -C "$head_root" rev-parse HEAD)"
git -C "$head_root" worktree add --quiet --detach "$base_root" "$base_commit"
echo "ab-gate: base ${base_commit:0:12} ($base_ref), head ${head_commit:0:12}" >&2

# --- 2. connbench, and each side's environment ----------------------------------------------
install_side() { # venv_python side_root: the side's own requirements into that interpreter
    local python="$1" root="$2"
    if [[ -f "$root/$requirements" ]]; then
        "$python" -m pip install --quiet -r "$root/$requirements"
    elif [[ -f "$root/pyproject.toml" || -f "$root/setup.py" ]]; then
        "$python" -m pip install --quiet "$root"
    else
        echo "ab-gate: $root has no $requirements, pyproject.toml or setup.py: nothing installed" >&2
    fi
}

connbench="${CB_CONNBENCH:-}"
if [[ "$install" == auto && -z "$connbench" ]]; then
    python3 -m venv "$work/connbench"
    "$work/connbench/bin/python" -m pip install --quiet --upgrade pip
    "$work/connbench/bin/python" -m pip install --quiet "$source_dir"
    connbench="$work/connbench/bin/connbench"
fi
connbench="${connbench:-connbench}"
command -v "$connbench" >/dev/null || die "connbench: not found ($connbench)"
connbench_python="$(dirname "$(command -v "$connbench")")/python"
[[ -x "$connbench_python" ]] || connbench_python=python3

# The seam with the sequential gate: used when this connbench has it.
run_help="$(COLUMNS=300 "$connbench" run --help 2>/dev/null || true)"
has_app_python=0
has_sequential=0
[[ "$run_help" == *--app-python* ]] && has_app_python=1
[[ "$run_help" == *--max-rounds* ]] && has_sequential=1

python_args=()
if [[ "$install" == auto ]]; then
    if ((has_app_python)); then
        for side in base head; do
            root="$base_root"
            [[ "$side" == head ]] && root="$head_root"
            python3 -m venv "$work/venv-$side"
            "$work/venv-$side/bin/python" -m pip install --quiet "uvicorn[standard]"
            install_side "$work/venv-$side/bin/python" "$root"
        done
        python_args=(--base-python "$work/venv-base/bin/python" --head-python "$work/venv-head/bin/python")
    else
        echo "ab-gate: this connbench serves apps with its own Python: the head's requirements" \
            "go beside it, and the base shares them" >&2
        install_side "$connbench_python" "$head_root"
    fi
fi

# --- 3. both sides in one run, and the verdict ----------------------------------------------
# The scenario (and so the gate) is the base's: a pull request is judged by the gate already
# merged, not by one it brings. A scenario new in the pull request is read from the head.
judged_by="$base_root/$scenario"
if [[ ! -f "$judged_by" ]]; then
    echo "ab-gate: $scenario is new in the head: its gate is the head's" >&2
    judged_by="$scenario"
fi
ab_toml="$work/ab.toml"
ab_args=("$judged_by" "$base_root" "$head_root" "$ab_toml" --slices "$slices" "${python_args[@]}")
[[ -n "${CB_APP:-}" ]] && ab_args+=(--app "$CB_APP")
[[ -n "${CB_IMPORT:-}" ]] && ab_args+=(--import "$CB_IMPORT")
"$connbench_python" "$here/ab_scenario.py" "${ab_args[@]}"

gate_args=()
read -r -a thresholds <<<"${CB_FAIL_ON:-}"
for threshold in "${thresholds[@]}"; do
    gate_args+=(--fail-on "$threshold")
done
summary_args=()
[[ -n "${GITHUB_STEP_SUMMARY:-}" ]] && summary_args=(--summary "$GITHUB_STEP_SUMMARY")

mkdir -p "$out"
result="$out/ab.json"
html="$out/ab.html"
code=0
if ((has_sequential)); then
    "$connbench" run "$ab_toml" --repeat auto --max-rounds "$rounds" --base base --head head \
        "${gate_args[@]}" -o "$result" "${summary_args[@]}" || code=$?
else
    "$connbench" run "$ab_toml" --repeat "$rounds" -o "$result" "${summary_args[@]}" || code=$?
    if [[ -f "$result" ]]; then
        judged=0
        "$connbench" compare "$result" --base base --head head "${gate_args[@]}" \
            "${summary_args[@]}" || judged=$?
        # The verdict, unless the run itself said no: a side that failed (1) stays a failure,
        # so does a crossed --fail-if limit (3); an invalid measurement (4) is an error.
        if ((code == 0)); then
            code=$judged
        elif ((code == 3)); then
            code=1
        fi
    fi
fi
[[ -f "$result" ]] && "$connbench" report "$result" -o "$html" >/dev/null || true

case "$code" in
    0) verdict=pass ;;
    1) verdict=fail ;;
    5) verdict=inconclusive ;;
    *) verdict=error ;;
esac
echo "ab-gate: verdict: $verdict (exit $code)" >&2
if [[ -n "${GITHUB_OUTPUT:-}" ]]; then
    {
        echo "verdict=$verdict"
        [[ -f "$result" ]] && echo "result=$result"
        [[ -f "$html" ]] && echo "html=$html"
    } >>"$GITHUB_OUTPUT"
fi
exit "$code"
