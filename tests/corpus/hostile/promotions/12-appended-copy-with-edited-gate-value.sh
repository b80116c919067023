# about: the real entry copied by hand to channel `staging` with its gate value changed; re-judging the gate on the stored results gives another value, named with the gate's line
# fixture: promoted
# run: medrun export staging out
# exit: 1
# expect: promotions.yaml:
# expect: re-judging
# writes: none
python3 - <<'PY'
text = open("promotions.yaml").read()
block = text[text.index("  - channel:"):].replace('channel: "prod"', 'channel: "staging"')
i = block.index("value: ") + len("value: ")
j = block.index("\n", i)
open("promotions.yaml", "w").write(text + block[:i] + "0.5" + block[j:])
PY
commit "promote to staging"
