# about: a consistent rewrite: the first `prod` entry's checkpoint and the second entry's `previous` both changed to the pt output (the chain still holds) and committed; the history check must name the commit
# fixture: promoted
# run: medrun export prod out
# exit: 1
# expect: rewrote promotions.yaml
# expect: commit
# writes: none
sed -i -e 's/^seed: 7$/seed: 8/' -e 's/min: 0.5/min: 0.0/' runs/hostile.yaml
commit "seed 8"
medrun -q run runs/hostile.yaml >/dev/null
medrun -q promote latest:dpo --to prod >/dev/null
commit "promote seed 8"
python3 - "$(git show HEAD~2:promotions.yaml | sed -n 's/^    checkpoint: "\(.*\)"$/\1/p' | head -n 1)" "$(tree_id pt)" <<'PY'
import sys
old, new = sys.argv[1], sys.argv[2]
text = open("promotions.yaml").read()
open("promotions.yaml", "w").write(text.replace(old, new))
PY
commit "fix checkpoint ids"
