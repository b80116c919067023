# about: one byte flipped in the cached results.json that the gates would read: `promote` evaluates again, judges fresh results, and the object is restored
# fixture: trained
# run: medrun promote latest:dpo --to prod
# exit: 0
# stdout: pass
# writes: promotions.yaml .medrun/**
# check: medrun verify
# check: grep -q 'channel: "prod"' promotions.yaml
results="$(medrun eval latest:dpo --suite evals/suite.yaml --json 2>/dev/null \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["results_output"])')"
entry="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["entries"]["results.json"]["object"])' "$(object "$results")")"
flip "$(object "$entry")"
