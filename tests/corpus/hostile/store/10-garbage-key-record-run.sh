# about: a stage's key record (`keys-v1/…/<key>.out`) overwritten with garbage: `run` treats it as damage, runs the stage again and writes a sound record in its place
# fixture: trained
# run: medrun run runs/hostile.yaml
# exit: 0
# expect: stage `pt`: its stored output is damaged
# expect: key record
# writes: .medrun/**
# check: medrun verify
# check: medrun plan runs/hostile.yaml | grep -q '^pt .*cached'
key="$(medrun plan runs/hostile.yaml --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["stages"][0]["key"])')"
f="$STORE/keys-v1/${key:0:2}/$key.out"
chmod u+w "$f"
printf '\x00\xff{"output": not json' > "$f"
