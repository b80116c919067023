# about: a branch promotes to `staging`; merging it with `-s ours` keeps main's file and silently drops that entry; the history check must name the merge commit
# fixture: promoted
# run: medrun lineage prod
# exit: 1
# expect: rewrote promotions.yaml
# expect: commit
# writes: none
main=$(git rev-parse --abbrev-ref HEAD)
git checkout -q -b side
medrun -q promote latest:dpo --to staging >/dev/null
commit "promote to staging"
git checkout -q "$main"
git merge -q -s ours --no-edit side
