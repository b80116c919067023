# Functions for the hostile cases (tests/corpus/hostile/README.md). The harness sources this file
# before a case's setup, in the case's project directory, with MEDRUN set to the binary under test
# and STORE to the project's store (.medrun).

medrun() { "$MEDRUN" "$@"; }

# Commit everything in the work tree: `commit [MESSAGE]`.
commit() { git add -A && git commit -q -m "${1:-hostile case}"; }

# Path of an object file: `object ID`.
object() { printf '%s/objects-v1/%s/%s\n' "$STORE" "${1:0:2}" "${1:2}"; }

# The output tree id of STAGE in the newest run record that completed or cached it: `tree_id STAGE`.
tree_id() {
    python3 - "$STORE" "$1" <<'PY'
import json, os, sys
store, stage = sys.argv[1], sys.argv[2]
best = None
for name in os.listdir(os.path.join(store, "runs-v1")):
    if not name.endswith(".jsonl"):
        continue
    path = os.path.join(store, "runs-v1", name)
    started, out = None, None
    for line in open(path, encoding="utf-8"):
        try:
            e = json.loads(line)
        except ValueError:
            continue
        if e.get("event") == "run_started":
            started = e.get("started_at")
        if e.get("event") in ("stage_completed", "stage_cached") and e.get("stage") == stage:
            out = e.get("output")
    if out and (best is None or started > best[0]):
        best = (started, out)
if best is None:
    sys.exit(f"tree_id: no run record has an output for stage {stage}")
print(best[1])
PY
}

# The object id of FILE in STAGE's output tree: `entry_id STAGE FILE`.
entry_id() {
    python3 - "$(object "$(tree_id "$1")")" "$2" <<'PY'
import json, sys
tree = json.load(open(sys.argv[1], encoding="utf-8"))
print(tree["entries"][sys.argv[2]]["object"])
PY
}

# Path of the object holding FILE of STAGE's output: `obj STAGE FILE`.
obj() { object "$(entry_id "$1" "$2")"; }

# Path of the newest run record: `record`.
record() { ls -t "$STORE"/runs-v1/*.jsonl | head -n 1; }

# Flip one byte of a file in place (made writable first): `flip PATH [OFFSET]` (default: the middle).
flip() {
    chmod u+w "$1"
    python3 - "$1" "${2:-}" <<'PY'
import sys
path, off = sys.argv[1], sys.argv[2]
data = bytearray(open(path, "rb").read())
i = int(off) if off else len(data) // 2
data[i] ^= 0x01
open(path, "wb").write(bytes(data))
PY
}

# Store FILE's bytes as an object, as someone who can write the store could; prints its id:
# `put_object FILE`.
put_object() { python3 "$(dirname "${BASH_SOURCE[0]}")/store.py" put "$STORE" "$1"; }

# Seal a run record again after editing it, as someone who can write the store could (an edit
# alone breaks the record's seal): `reseal RECORD`.
reseal() { chmod u+w "$1"; python3 "$(dirname "${BASH_SOURCE[0]}")/store.py" reseal "$STORE" "$1" > /dev/null; }
