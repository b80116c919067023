# about: a checkpoint truncated to half its size (a disk that filled up): `run` rebuilds that stage only, restores the object, and the later stage stays cached
# fixture: trained
# run: medrun run runs/hostile.yaml
# exit: 0
# expect: stage `sft`: its stored output is damaged
# stdout: 1 stage(s) run, 2 cached
# writes: .medrun/**
# check: medrun verify
o="$(obj sft model.safetensors)"
chmod u+w "$o"
truncate -s "$(( $(stat -c %s "$o") / 2 ))" "$o"
