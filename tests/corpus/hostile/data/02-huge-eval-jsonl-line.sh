# about: a 5 MB line in a suite's JSON-lines data is refused by file:line, before it is parsed or scored
# fixture: trained
# run: medrun eval latest:dpo --suite evals/suite.yaml --no-cache
# exit: 1
# timeout: 60
# expect: data/mc.jsonl:2: the line holds
# expect: over the limit of 4194304 bytes
python3 - <<'PY'
import json
with open("data/mc.jsonl", "a", encoding="utf-8") as f:
    f.write(json.dumps({"question": "q" * (5 << 20), "choices": ["a", "b"], "answer": 0}) + "\n")
PY
medrun lock >/dev/null 2>&1
commit
