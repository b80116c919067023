# about: a planted record (a copy of the real one under a new run id, its dpo output changed to the pt output, no seal) must not let `promote NEWRUN:dpo` ship the pt checkpoint
# fixture: trained
# run: medrun promote 0123456789abcdef0123456789abcdef:dpo --to prod
# exit: 1
# expect: 0123456789abcdef0123456789abcdef.jsonl
# expect: not sealed
# writes: none
python3 - "$(record)" "$STORE/runs-v1/0123456789abcdef0123456789abcdef.jsonl" "$(tree_id dpo)" "$(tree_id pt)" <<'PY'
import json, sys
src, dst, dpo, pt = sys.argv[1:]
lines = []
for line in open(src):
    e = json.loads(line)
    if e["event"] == "run_started":
        e["run_id"] = "0123456789abcdef0123456789abcdef"
        e["started_at"] = "2099-01-01T00:00:00.000Z"
    if e.get("output") == dpo:
        e["output"] = pt
    lines.append(json.dumps(e, separators=(",", ":")))
open(dst, "w").write("\n".join(lines) + "\n")
PY
