# about: a .promotions.yaml.tmp-* left in the root by a killed promote no longer blocks run (promotions.yaml itself never did): run removes it and succeeds
# fixture: promoted
# run: medrun run runs/hostile.yaml
# exit: 0
# writes: .promotions.yaml.tmp-* .medrun/**
# check: test -z "$(git status --porcelain -uall)"
# The pid of a process that has exited, as a killed medrun's would be.
true & dead=$!; wait "$dead"
cp promotions.yaml ".promotions.yaml.tmp-$dead-1761000000000000000"
