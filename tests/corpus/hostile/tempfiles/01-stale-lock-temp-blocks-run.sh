# about: a .datasets.lock.tmp-* left in the project root by a killed lock no longer makes every later run refuse the dirty tree: run removes it and succeeds
# fixture: trained
# run: medrun run runs/hostile.yaml
# exit: 0
# writes: .datasets.lock.tmp-* .medrun/**
# check: test -z "$(git status --porcelain -uall)"
# check: test -z "$(ls -A | grep '\.tmp-' || true)"
# The pid of a process that has exited, as a killed medrun's would be.
true & dead=$!; wait "$dead"
head -c 100 datasets.lock > ".datasets.lock.tmp-$dead-1761000000000000000"
