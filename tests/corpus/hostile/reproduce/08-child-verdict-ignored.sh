# about: a rebuilt binary that reports another stored tree as dpo's output while printing "identical" is judged from the store: exit 4, naming the stage and the differing files
# fixture: trained
# run: medrun reproduce latest --rebuild
# exit: 4
# expect: reproduction differs: stage `dpo`
# expect: model.safetensors
# timeout: 180
run=$(basename "$(record)" .jsonl)
stage() { printf '{"stage": "%s", "recorded": "%s", "produced": "%s", "identical": true}' "$1" "$(tree_id "$1")" "$(tree_id "$2")"; }
report="{\"run\": \"$run\", \"identical\": true, \"stages\": [$(stage pt pt), $(stage sft sft), $(stage dpo sft)]}"
# A stand-in for the recorded engine, on a branch (so it may be built with --rebuild): a crate
# named medrun whose binary prints the report in $report and exits 0.
mkdir -p src
printf '[package]\nname = "medrun"\nversion = "0.0.0"\nedition = "2021"\n\n[workspace]\n' > Cargo.toml
printf 'version = 3\n\n[[package]]\nname = "medrun"\nversion = "0.0.0"\n' > Cargo.lock
printf 'fn main() { print!("{}", r#"%s"#); }\n' "$report" > src/main.rs
git add -A
c=$(git commit-tree "$(git write-tree)" -p HEAD -m "stand-in engine")
git reset -q
rm -rf Cargo.toml Cargo.lock src
git branch feature "$c"
# The planted record: the newest run record, rewritten to name commit $c and another engine.
chmod u+w "$(record)"
python3 - "$(record)" "$c" <<'PY'
import json, sys
path, commit = sys.argv[1], sys.argv[2]
lines = open(path, encoding="utf-8").read().splitlines()
first = json.loads(lines[0])
first["git"]["commit"] = commit
first["engine"]["source_hash"] = "0" * 64
lines[0] = json.dumps(first)
open(path, "w", encoding="utf-8").write("\n".join(lines) + "\n")
PY
# Sealed again, as whoever can write the store can: the trust rule must hold on its own.
reseal "$(record)"
