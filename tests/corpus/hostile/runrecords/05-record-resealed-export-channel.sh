# about: the promoted run's record rewritten and sealed again consistently (its dpo output now names the pt output); `export prod` must refuse, because the record no longer has the address promotions.yaml pinned
# fixture: promoted
# run: medrun export prod out
# exit: 1
# expect: promotions.yaml:
# expect: sealed again
# writes: none
rec=$(record)
python3 - "$rec" "$(tree_id dpo)" "$(tree_id pt)" <<'PY'
import os, sys
path, dpo, pt = sys.argv[1:]
os.chmod(path, 0o644)
text = open(path).read()
open(path, "w").write(text.replace(f'"output":"{dpo}"', f'"output":"{pt}"'))
PY
report=$(medrun --json verify || true)
id=$(printf '%s' "$report" | python3 -c 'import re, sys; m = re.search(r"hash to ([0-9a-f]{64})", sys.stdin.read()); print(m.group(1) if m else "")')
if [ -n "$id" ]; then
    mkdir -p "$(dirname "$(object "$id")")"
    cp "$rec" "$(object "$id")"
    echo "$id" > "${rec%.jsonl}.seal"
fi
