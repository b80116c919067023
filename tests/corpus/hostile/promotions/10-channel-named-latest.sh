# about: a channel named `latest` would always resolve to the newest run instead; `promote` refuses the name before evaluating or writing anything
# fixture: trained
# run: medrun promote latest:dpo --to latest
# exit: 1
# expect: latest
# expect: channel name
# writes: none
true
