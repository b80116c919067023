# about: one byte flipped in a stage's output tree object: `run` rebuilds the stage, and storing the tree again replaces the corrupt object instead of keeping it
# fixture: trained
# run: medrun run runs/hostile.yaml
# exit: 0
# expect: stage `dpo`: its stored output is damaged
# expect: the tree of output
# writes: .medrun/**
# check: medrun verify
flip "$(object "$(tree_id dpo)")" 20
