# about: a stage's key record pointing at an output that is not in the store: `run` rebuilds the stage and replaces the record (not a false nondeterminism alarm, not a record that stays broken)
# fixture: trained
# run: medrun run runs/hostile.yaml
# exit: 0
# expect: stage `sft`: its stored output is damaged
# expect: is missing from the store
# writes: .medrun/**
# check: medrun verify
# check: ! medrun lineage latest | grep -q NONDETERMINISM
key="$(medrun plan runs/hostile.yaml --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["stages"][1]["key"])')"
f="$STORE/keys-v1/${key:0:2}/$key.out"
chmod u+w "$f"
printf '{"output":"%s","run":"00000000000000000000000000000000"}' "$(printf 'planted' | sha256sum | cut -c1-64)" > "$f"
