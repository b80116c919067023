# about: a hand-written entry with no gates and an all-zero results id gives `prod` to a checkpoint that was never promoted (the pt output); `export prod` must refuse it, naming the entry
# fixture: promoted
# run: medrun export prod out
# exit: 1
# expect: promotions.yaml:
# expect: gates
# writes: none
python3 - "$(tree_id pt)" <<'PY'
import sys
text = open("promotions.yaml").read()
start = text.index("  - channel:")
block = text[start:]
holder = block.split('checkpoint: "')[1].split('"')[0]
forged = block.replace(holder, sys.argv[1]).replace("previous: null", f'previous: "{holder}"')
results = forged.split('results: "')[1].split('"')[0]
forged = forged.replace(results, "0" * 64)
forged = forged[: forged.index("    gates:")] + "    gates: []\n"
open("promotions.yaml", "w").write(text + forged)
PY
commit "promote pt to prod"
