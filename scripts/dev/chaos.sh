#!/usr/bin/env bash
# The kill campaign: N random SIGKILLs of medrun commands, each followed by a resume and checks.
#
#   scripts/dev/chaos.sh [N]          (default 50; CHAOS_SEED=S picks the random times)
#
# It clones this repository twice into a scratch directory, keeping runs/ci.yaml as the only spec. In the first clone it runs, without
# interruption, `medrun run runs/ci.yaml`, `medrun lock` (from a deleted datasets.lock),
# `medrun promote latest:dpo --to chaos` and `medrun export latest:dpo DIR`, and keeps what they
# produced and how long each took. In the second clone it then runs the same commands N times,
# cycling run, lock, run, promote, run, export, and SIGKILLs each one at a uniformly random time
# within its uninterrupted duration. After every kill it
#   1. resumes: runs the same command again, which must succeed;
#   2. checks the store with `medrun verify`;
#   3. checks that `git status --porcelain` is empty (no temp file, no stray write);
#   4. compares the result with the uninterrupted one, byte for byte: the stage output and eval
#      result addresses of the run, datasets.lock, promotions.yaml (except the time, run id and record address, which name the run),
#      and every file of the exported directory.
# A kill that lands after the command already finished is counted as such. Every run kill starts
# from an empty store, so the kill hits tokenizer training, training, checkpointing, evaluation or
# the gates; a promote kill from the trained store; a lock kill from a deleted datasets.lock.
#
# Prints one line per kill and a table at the end; exits 1 if any check failed.
# Set MEDRUN=path to test a given binary (default: builds target/release/medrun).
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$PWD

n=${1:-50}
seed=${CHAOS_SEED:-$(date +%s)}
RANDOM=$seed
if [[ -z "${MEDRUN:-}" ]]; then
    cargo build --release --locked -q
    MEDRUN=$repo/target/release/medrun
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/medrun-chaos.XXXXXX")
echo "chaos: $n kills, seed $seed, binary $MEDRUN, scratch $work"

export GIT_AUTHOR_NAME=chaos GIT_AUTHOR_EMAIL=chaos@medrun.invalid
export GIT_COMMITTER_NAME=chaos GIT_COMMITTER_EMAIL=chaos@medrun.invalid
# Fixed dates: both clones make the same commit, so promotions.yaml records the same commit id.
export GIT_AUTHOR_DATE=2026-01-01T00:00:00Z GIT_COMMITTER_DATE=2026-01-01T00:00:00Z
export NO_COLOR=1
unset MEDRUN_STORE

# JSON field extraction without jq: `outputs FILE` prints the stage outputs and eval results
# addresses of a `medrun --json run` report, one per line.
outputs() {
    python3 - "$1" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
for s in r["stages"]:
    print("stage", s["name"], s["output"])
for e in r.get("evals", []):
    print("eval", e["stage"], e["suite"], e["results"])
PY
}

now() { date +%s.%N; }
elapsed() { python3 -c "print(f'{$(now) - $1:.3f}')"; }
# A uniformly random time in [0, $1) seconds, with millisecond steps.
random_time() { python3 -c "import random; random.seed($RANDOM * 32768 + $RANDOM); print(f'{random.random() * $1:.3f}')"; }

# A clone of HEAD whose only spec is runs/ci.yaml (`medrun lock` locks every spec in runs/, and
# the others need a downloaded model), with its datasets.lock brought in line and committed.
clone() {
    git clone -q "$repo" "$1"
    (
        cd "$1"
        git checkout -q "$(git -C "$repo" rev-parse HEAD)"
        git rm -q $(git ls-files runs | grep -v '^runs/ci.yaml$')
        "$MEDRUN" -q lock
        git add -A && git commit -q -m "chaos: runs/ci.yaml only"
    )
}

# ---- the uninterrupted reference
ref=$work/ref
clone "$ref"
cd "$ref"
t=$(now); "$MEDRUN" --json -q run runs/ci.yaml > "$work/ref-run.json"; d_run=$(elapsed "$t")
outputs "$work/ref-run.json" > "$work/ref-outputs"
cp datasets.lock "$work/ref-lock"
rm datasets.lock
t=$(now); "$MEDRUN" -q lock; d_lock=$(elapsed "$t")
cmp -s datasets.lock "$work/ref-lock" || { echo "chaos: medrun lock does not rewrite the committed datasets.lock byte for byte"; exit 1; }
t=$(now); "$MEDRUN" -q promote latest:dpo --to chaos; d_promote=$(elapsed "$t")
grep -Ev "^    (promoted_at|run|record):" promotions.yaml > "$work/ref-promotions"
git checkout -q -- . 2>/dev/null || true
rm -f promotions.yaml
t=$(now); "$MEDRUN" -q export latest:dpo "$work/ref-export"; d_export=$(elapsed "$t")
echo "chaos: uninterrupted: run ${d_run}s, lock ${d_lock}s, promote ${d_promote}s, export ${d_export}s"

# ---- the campaign
sub=$work/sub
clone "$sub"
cd "$sub"
"$MEDRUN" -q run runs/ci.yaml > /dev/null
cp -a .medrun "$work/trained-store"

declare -A kills=() early=() fails=()
failed=0
fail() {
    echo "    FAIL: $*"
    fails[$op]=$(( ${fails[$op]:-0} + 1 ))
    failed=1
}

for ((i = 1; i <= n; i++)); do
    case $(( (i - 1) % 6 )) in
        0 | 2 | 4) op=run ;;
        1) op=lock ;;
        3) op=promote ;;
        5) op=export ;;
    esac
    case $op in
        run)
            rm -rf .medrun
            cmd=("$MEDRUN" --json -q run runs/ci.yaml); limit=$d_run ;;
        lock)
            rm -f datasets.lock
            cmd=("$MEDRUN" -q lock); limit=$d_lock ;;
        promote)
            rm -rf .medrun && cp -a "$work/trained-store" .medrun && rm -f promotions.yaml
            cmd=("$MEDRUN" -q promote latest:dpo --to chaos); limit=$d_promote ;;
        export)
            rm -rf .medrun && cp -a "$work/trained-store" .medrun
            out=$work/export-$i
            cmd=("$MEDRUN" -q export latest:dpo "$out"); limit=$d_export ;;
    esac
    at=$(random_time "$limit")
    "${cmd[@]}" > "$work/last.out" 2> "$work/last.err" &
    pid=$!
    sleep "$at"
    if kill -KILL "$pid" 2> /dev/null; then
        what="killed at ${at}s"
        kills[$op]=$(( ${kills[$op]:-0} + 1 ))
    else
        what="finished before ${at}s"
        early[$op]=$(( ${early[$op]:-0} + 1 ))
    fi
    wait "$pid" 2> /dev/null || true
    echo "[$i/$n] $op: $what"

    # 1. resume (an export that finished before the kill has nothing to resume)
    if [[ $op == export && -e $out && $what == finished* ]]; then
        :
    elif ! "${cmd[@]}" > "$work/resume.out" 2> "$work/resume.err"; then
        fail "the resumed $op failed: $(tail -n 5 "$work/resume.err")"
    fi
    # 2. the store
    if ! "$MEDRUN" -q verify > /dev/null 2> "$work/verify.err"; then
        fail "medrun verify: $(tail -n 5 "$work/verify.err")"
    fi
    # 3. the work tree (promotions.yaml is the one file a promotion must leave for a commit)
    dirty=$(git status --porcelain --untracked-files=all | grep -v ' promotions.yaml$' || true)
    [[ -z "$dirty" ]] || fail "git status is not clean: $dirty"
    # 4. byte equality with the uninterrupted run
    case $op in
        run)
            outputs "$work/resume.out" > "$work/outputs" 2> /dev/null || true
            cmp -s "$work/outputs" "$work/ref-outputs" || fail "outputs differ: $(diff "$work/ref-outputs" "$work/outputs" | head -n 6)" ;;
        lock)
            cmp -s datasets.lock "$work/ref-lock" || fail "datasets.lock differs from the uninterrupted one" ;;
        promote)
            grep -Ev "^    (promoted_at|run|record):" promotions.yaml 2> /dev/null > "$work/promotions" || true
            cmp -s "$work/promotions" "$work/ref-promotions" || fail "promotions.yaml differs: $(diff "$work/ref-promotions" "$work/promotions" | head -n 6)"
            rm -f promotions.yaml ;;
        export)
            diff -r "$out" "$work/ref-export" > /dev/null || fail "the export differs from the uninterrupted one"
            leftovers=$(ls -A "$work" | grep '^\.medrun-export' || true)
            [[ -z "$leftovers" ]] || fail "temp directories left beside the export: $leftovers"
            rm -rf "$out" ;;
    esac
done

echo
echo "| command | kills while running | finished before the kill | failed checks |"
echo "|---|---:|---:|---:|"
for op in run lock promote export; do
    echo "| $op | ${kills[$op]:-0} | ${early[$op]:-0} | ${fails[$op]:-0} |"
done
echo "seed $seed; scratch $work"
if [[ $failed -ne 0 ]]; then
    echo "chaos: FAILED"
    exit 1
fi
rm -rf "$work"
echo "chaos: every kill resumed to the same bytes, verify passed, git status clean"
