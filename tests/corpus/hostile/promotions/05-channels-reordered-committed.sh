# about: two channels' entries swapped in place and committed (each chain still holds); the history check must name the commit that reordered them
# fixture: promoted
# run: medrun export prod out
# exit: 1
# expect: rewrote promotions.yaml
# expect: commit
# writes: none
medrun -q promote latest:dpo --to staging >/dev/null
commit "promote to staging"
python3 - <<'PY'
text = open("promotions.yaml").read()
head, _, rest = text.partition("  - channel:")
a, _, b = rest.partition("  - channel:")
open("promotions.yaml", "w").write(head + "  - channel:" + b + "  - channel:" + a)
PY
commit "sort channels"
