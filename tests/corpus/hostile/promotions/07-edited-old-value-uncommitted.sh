# about: the committed entry's gate value is edited in the work tree but not committed; resolving the channel must refuse the file, because it no longer keeps the committed history
# fixture: promoted
# run: medrun lineage prod
# exit: 1
# expect: promotions.yaml
# expect: committed history
# writes: none
python3 - <<'PY'
text = open("promotions.yaml").read()
i = text.index("value: ") + len("value: ")
j = text.index("\n", i)
open("promotions.yaml", "w").write(text[:i] + "0.875" + text[j:])
PY
