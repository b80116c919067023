# about: at the start of lock a dead process's temp file is removed but a live one's (a running sleep standing in for a medrun mid-write) is left alone
# fixture: trained
# run: medrun lock
# exit: 0
# writes: datasets.lock .datasets.lock.tmp-* .medrun/state-v1.json
# check: test -e ".datasets.lock.tmp-$(cat .git/sleeper.pid)-1"
# check: test "$(ls -A | grep -c '\.tmp-')" -eq 1
# check: kill "$(cat .git/sleeper.pid)"
# The pid of a process that has exited, as a killed medrun's would be.
true & dead=$!; wait "$dead"
sleep 120 >/dev/null 2>&1 </dev/null &
echo $! > .git/sleeper.pid
echo "being written" > ".datasets.lock.tmp-$!-1"
echo "left by a kill" > ".datasets.lock.tmp-$dead-2"
