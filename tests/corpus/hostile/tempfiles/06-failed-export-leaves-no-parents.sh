# about: an export that fails part-way (an object of the output is missing) leaves nothing behind: no staging directory and none of the parent directories it created
# fixture: trained
# run: medrun export latest:dpo out/a/model
# exit: 1
# expect: is missing from the store
# check: test ! -e out
rm -f "$(obj dpo tokenizer.json)"
