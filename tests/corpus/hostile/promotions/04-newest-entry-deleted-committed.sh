# about: a silent rollback: `prod` is promoted a second time, then the newest entry is deleted and the deletion committed, so `prod` names the old checkpoint again; `export prod` must refuse, naming the commit
# fixture: promoted
# run: medrun export prod out
# exit: 1
# expect: rewrote promotions.yaml
# expect: commit
# writes: none
# A second model that also passes: another seed, and a gate every model passes.
sed -i -e 's/^seed: 7$/seed: 8/' -e 's/min: 0.5/min: 0.0/' runs/hostile.yaml
commit "seed 8"
medrun -q run runs/hostile.yaml >/dev/null
medrun -q promote latest:dpo --to prod >/dev/null
commit "promote seed 8"
git show HEAD~1:promotions.yaml > promotions.yaml
commit "roll back prod"
