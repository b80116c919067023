# about: a run record edited after it was sealed (its dpo output now names the pt output) must be reported by `medrun verify`, naming the record
# fixture: trained
# run: medrun verify
# exit: 1
# expect: runs-v1/
# expect: changed after it was sealed
# writes: none
rec=$(record)
python3 - "$rec" "$(tree_id dpo)" "$(tree_id pt)" <<'PY'
import os, sys
path, dpo, pt = sys.argv[1:]
os.chmod(path, 0o644)
text = open(path).read()
open(path, "w").write(text.replace(f'"output":"{dpo}"', f'"output":"{pt}"'))
PY
