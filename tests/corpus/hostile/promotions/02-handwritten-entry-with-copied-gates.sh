# about: a hand-written entry that copies the real entry's gates but gives `prod` to the pt output, with an all-zero results id; `export prod` must refuse it, naming the entry
# fixture: promoted
# run: medrun export prod out
# exit: 1
# expect: promotions.yaml:
# expect: prod
# writes: none
python3 - "$(tree_id pt)" <<'PY'
import sys
text = open("promotions.yaml").read()
block = text[text.index("  - channel:"):]
holder = block.split('checkpoint: "')[1].split('"')[0]
results = block.split('results: "')[1].split('"')[0]
forged = (block.replace(holder, sys.argv[1]).replace("previous: null", f'previous: "{holder}"')
          .replace(results, "0" * 64).replace('stage: "dpo"', 'stage: "pt"'))
open("promotions.yaml", "w").write(text + forged)
PY
commit "promote pt to prod"
