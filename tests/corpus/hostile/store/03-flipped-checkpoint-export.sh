# about: one byte flipped in a checkpoint: `export` ships nothing, creates no directory, and names the object, the file and the command that restores it
# fixture: trained
# run: medrun export latest:dpo exported
# exit: 1
# expect: `model.safetensors` of output
# expect: is corrupt
# expect: medrun run runs/hostile.yaml
# writes: none
# check: test ! -e exported
flip "$(obj dpo model.safetensors)" 100
