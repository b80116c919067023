# about: a record edited so that its dpo stage names the pt output would make gc delete the dpo checkpoint; gc must refuse the record and delete nothing
# fixture: trained
# run: medrun gc
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
