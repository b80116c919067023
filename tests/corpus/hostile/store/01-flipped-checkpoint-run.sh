# about: one byte flipped in a cached checkpoint: `run` does not call the stage cached but trains it again, which restores the object byte for byte
# fixture: trained
# run: medrun run runs/hostile.yaml
# exit: 0
# expect: stage `dpo`: its stored output is damaged
# expect: `model.safetensors` of output
# expect: is corrupt
# writes: .medrun/**
# check: medrun verify
# check: medrun lineage latest | grep -q 'dpo.*completed'
flip "$(obj dpo model.safetensors)"
