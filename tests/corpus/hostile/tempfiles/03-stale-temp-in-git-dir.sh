# about: a temp file that a killed lock left in .git/medrun-tmp/ (where lock now writes, out of git's sight) is removed at the next lock
# fixture: trained
# run: medrun lock
# exit: 0
# writes: datasets.lock .medrun/state-v1.json
# check: test -z "$(ls -A .git/medrun-tmp)"
# check: test -z "$(git status --porcelain -uall | grep -v ' datasets.lock$' || true)"
# The pid of a process that has exited, as a killed medrun's would be.
true & dead=$!; wait "$dead"
mkdir -p .git/medrun-tmp
head -c 100 datasets.lock > ".git/medrun-tmp/datasets.lock.tmp-$dead-1761000000000000000"
