# about: an export into an existing empty directory that fails part-way leaves that directory as it was (it used to be removed)
# fixture: trained
# run: medrun export latest:dpo exports/model
# exit: 1
# expect: is missing from the store
# check: test -d exports/model
# check: test -z "$(ls -A exports/model)"
mkdir -p exports/model
rm -f "$(obj dpo tokenizer.json)"
