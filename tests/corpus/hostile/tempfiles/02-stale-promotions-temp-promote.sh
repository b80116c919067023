# about: a .promotions.yaml.tmp-* left by a killed promote is removed by the next promote, which succeeds and leaves the tree clean but for promotions.yaml
# fixture: promoted
# run: medrun promote latest:dpo --to staging
# exit: 0
# writes: promotions.yaml .promotions.yaml.tmp-* .medrun/**
# check: test "$(git status --porcelain -uall)" = " M promotions.yaml"
# The pid of a process that has exited, as a killed medrun's would be.
true & dead=$!; wait "$dead"
cp promotions.yaml ".promotions.yaml.tmp-$dead-1761000000000000000"
