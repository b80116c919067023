# about: a record rewritten consistently (dpo output changed to the pt output, the new bytes stored as an object and the seal replaced) must still be caught by `medrun verify`: the object holding the record as first sealed is named by no seal
# fixture: trained
# run: medrun verify
# exit: 1
# expect: runs-v1/
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
# medrun itself says what the edited bytes hash to.
report=$(medrun --json verify || true)
id=$(printf '%s' "$report" | python3 -c 'import re, sys; m = re.search(r"hash to ([0-9a-f]{64})", sys.stdin.read()); print(m.group(1) if m else "")')
if [ -n "$id" ]; then
    mkdir -p "$(dirname "$(object "$id")")"
    cp "$rec" "$(object "$id")"
    echo "$id" > "${rec%.jsonl}.seal"
fi
