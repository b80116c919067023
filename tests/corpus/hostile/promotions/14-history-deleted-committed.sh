# about: promotions.yaml deleted and the deletion committed, erasing every channel; `promotions verify` must report the commit that removed the history
# fixture: promoted
# run: medrun promotions verify
# exit: 1
# expect: rewrote promotions.yaml
# expect: commit
# writes: none
git rm -q promotions.yaml
commit "remove promotions"
