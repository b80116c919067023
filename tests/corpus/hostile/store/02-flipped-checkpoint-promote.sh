# about: one byte flipped in a checkpoint whose evaluation and gates are cached: `promote` refuses it, naming the object and the file, and records nothing
# fixture: trained
# run: medrun promote latest:dpo --to prod
# exit: 1
# expect: is damaged
# expect: `model.safetensors` of output
# expect: medrun run runs/hostile.yaml
# writes: none
# check: test ! -e promotions.yaml
flip "$(obj dpo model.safetensors)"
