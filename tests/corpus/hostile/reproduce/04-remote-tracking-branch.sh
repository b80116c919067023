# about: a commit reachable only from a remote-tracking branch (as a fetch of a fork brings in) is not built, even with --rebuild
# fixture: trained
# run: medrun reproduce latest --rebuild
# exit: 1
# expect: not reachable from any branch or tag
# expect: remote-tracking branches do not count
# check: test ! -e PWNED
# check: test -z "$(git branch --list 'medrun-reproduce-*')"
# check: test ! -e .git/medrun
# A commit on top of HEAD, on no branch: a crate named medrun whose build script and binary
# leave PWNED in the project.
mkdir -p src
printf '[package]\nname = "medrun"\nversion = "0.0.0"\nedition = "2021"\n\n[workspace]\n' > Cargo.toml
printf 'version = 3\n\n[[package]]\nname = "medrun"\nversion = "0.0.0"\n' > Cargo.lock
printf 'fn main() { std::fs::write("%s/PWNED", "build.rs ran").unwrap(); }\n' "$PWD" > build.rs
printf 'fn main() { std::fs::write("%s/PWNED", "binary ran").unwrap(); }\n' "$PWD" > src/main.rs
git add -A
c=$(git commit-tree "$(git write-tree)" -p HEAD -m "speed up training")
git reset -q
rm -rf Cargo.toml Cargo.lock build.rs src
git update-ref refs/remotes/fork/speedup "$c"
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
