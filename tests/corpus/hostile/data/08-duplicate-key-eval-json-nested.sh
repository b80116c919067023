# about: a nested key written twice deep inside a `format: json` eval document is refused with its path
# fixture: trained
# run: medrun eval latest:dpo --suite evals/ids.yaml --no-cache
# exit: 1
# expect: data/ids.json:4:
# expect: duplicate key "answer" in q1.meta
cat > data/ids.json <<'JSON'
{
  "q1": {"question": "First-line drug for type 2 diabetes?", "choices": ["Metformin", "Insulin"], "answer": 0,
         "meta": {"answer": "Metformin",
                  "answer": "Insulin"}}
}
JSON
sed -e 's/^name: suite/name: ids/' -e 's|mc: {path: data/mc.jsonl, format: jsonl}|mc: {path: data/ids.json, format: json}|' evals/suite.yaml > evals/ids.yaml
medrun lock >/dev/null 2>&1
commit
