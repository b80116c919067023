# about: a medrun binary planted in the store where reproduce used to keep its builds is never run; with --rebuild the commit is built in the git directory (here it is no crate, so the build fails)
# fixture: trained
# run: medrun reproduce latest --rebuild
# exit: 1
# expect: building commit
# expect: .git/medrun/reproduce-
# timeout: 120
# check: test ! -e PWNED
c=$(git rev-parse HEAD)
mkdir -p ".medrun/tmp/reproduce-${c:0:12}/target/release"
planted=".medrun/tmp/reproduce-${c:0:12}/target/release/medrun"
printf '#!/bin/sh\ntouch "%s/PWNED"\necho "{\"run\": \"x\", \"identical\": true, \"stages\": []}"\n' "$PWD" > "$planted"
chmod +x "$planted"
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
