# about: a channel named like hex (`beef`) would be shadowed by run and object prefixes and could never be named; `promote` refuses it before evaluating or writing anything
# fixture: trained
# run: medrun promote latest:dpo --to beef
# exit: 1
# expect: beef
# expect: hex
# writes: none
true
