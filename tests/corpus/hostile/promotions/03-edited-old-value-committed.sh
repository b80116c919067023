# about: the recorded gate value of a committed entry is edited and the edit committed; the history check must name the commit that rewrote the entry
# fixture: promoted
# run: medrun lineage prod
# exit: 1
# expect: rewrote promotions.yaml
# expect: commit
# writes: none
python3 - <<'PY'
text = open("promotions.yaml").read()
i = text.index("value: ") + len("value: ")
j = text.index("\n", i)
open("promotions.yaml", "w").write(text[:i] + "0.875" + text[j:])
PY
commit "tidy promotions"
