# about: the seal deleted and the record's dpo output edited to the pt output; `export RUN:dpo` must refuse the unsealed record instead of shipping the pt weights
# fixture: trained
# run: medrun export "$(basename "$(record)" .jsonl):dpo" out
# exit: 1
# expect: .jsonl
# expect: not sealed
# writes: none
rec=$(record)
rm -f "${rec%.jsonl}.seal"
python3 - "$rec" "$(tree_id dpo)" "$(tree_id pt)" <<'PY'
import os, sys
path, dpo, pt = sys.argv[1:]
os.chmod(path, 0o644)
text = open(path).read()
open(path, "w").write(text.replace(f'"output":"{dpo}"', f'"output":"{pt}"'))
PY
