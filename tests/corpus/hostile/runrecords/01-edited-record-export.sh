# about: the sealed record's dpo stage output is edited to name the pt output; `export RUN:dpo` must refuse the record, naming its file, instead of shipping the pt weights
# fixture: trained
# run: medrun export "$(basename "$(record)" .jsonl):dpo" out
# exit: 1
# expect: .jsonl
# expect: sealed
# writes: none
rec=$(record)
python3 - "$rec" "$(tree_id dpo)" "$(tree_id pt)" <<'PY'
import os, sys
path, dpo, pt = sys.argv[1:]
os.chmod(path, 0o644)
text = open(path).read()
open(path, "w").write(text.replace(f'"output":"{dpo}"', f'"output":"{pt}"'))
PY
