# about: an eval record with "answer" written twice (which answer is scored?) is refused by eval, naming file:line and the key
# fixture: trained
# run: medrun eval latest:dpo --suite evals/suite.yaml --no-cache
# exit: 1
# expect: data/mc.jsonl:1:
# expect: duplicate key "answer"
cat > data/mc.jsonl <<'JSONL'
{"question":"First-line drug for type 2 diabetes?","choices":["Metformin","Insulin"],"answer":0,"answer":1}
JSONL
medrun lock >/dev/null 2>&1
commit
