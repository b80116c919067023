# about: the file rewritten as version 1 (which carries no evidence) and committed, to dodge verification; it is refused with an upgrade hint
# fixture: promoted
# run: medrun export prod out
# exit: 1
# expect: promotions.yaml:
# expect: version 1
# writes: none
sed -i 's/^version: 2$/version: 1/' promotions.yaml
python3 - <<'PY'
import re
text = open("promotions.yaml").read()
for key in ("record", "commit", "vs_channel", "holder", "holder_results"):
    text = re.sub(rf"^ +{key}: .*\n", "", text, flags=re.M)
open("promotions.yaml", "w").write(text)
PY
git add -A && git commit -q --allow-empty -m "simplify promotions.yaml"
