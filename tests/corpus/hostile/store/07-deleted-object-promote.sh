# about: a checkpoint with one of its objects deleted (its tokenizer): `promote` refuses it, naming the missing object and the file, instead of promoting from cached results
# fixture: trained
# run: medrun promote latest:dpo --to prod
# exit: 1
# expect: `tokenizer.json` of output
# expect: is missing from the store
# writes: none
# check: test ! -e promotions.yaml
o="$(obj dpo tokenizer.json)"
chmod u+w "$o"
rm -f "$o"
