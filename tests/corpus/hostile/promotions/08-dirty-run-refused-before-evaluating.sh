# about: a run whose spec had uncommitted changes (--allow-dirty) cannot be verified against git later, so `promote` refuses its checkpoint up front, before any results are stored
# fixture: trained
# run: medrun promote latest:dpo --to prod
# exit: 1
# expect: runs/hostile.yaml
# expect: uncommitted spec changes
# writes: none
sed -i 's/min: 0.5/min: 0.0/' runs/hostile.yaml
medrun -q run runs/hostile.yaml --allow-dirty >/dev/null
git checkout -q runs/hostile.yaml
