# about: one 5 MB record inside a `format: json` eval document is refused by its line before the document is parsed
# fixture: trained
# run: medrun eval latest:dpo --suite evals/big.yaml --no-cache
# exit: 1
# timeout: 60
# expect: data/big.json:3: record 1 holds
# expect: --max-record-bytes
python3 - <<'PY'
import json
small = {"question": "First-line drug for type 2 diabetes?", "choices": ["Metformin", "Insulin"], "answer": 0}
big = dict(small, question="q" * (5 << 20))
with open("data/big.json", "w", encoding="utf-8") as f:
    f.write("[\n" + json.dumps(small) + ",\n" + json.dumps(big) + "\n]\n")
PY
sed -e 's/^name: suite/name: big/' -e 's|mc: {path: data/mc.jsonl, format: jsonl}|mc: {path: data/big.json, format: json}|' evals/suite.yaml > evals/big.yaml
medrun lock >/dev/null 2>&1
commit
