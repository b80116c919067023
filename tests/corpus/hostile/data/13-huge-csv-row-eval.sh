# about: one 5 MB row in a CSV eval file (a quoted field with newlines) is refused by the line it starts on, before the CSV is parsed
# fixture: trained
# run: medrun eval latest:dpo --suite evals/table.yaml --no-cache
# exit: 1
# timeout: 60
# expect: data/mc.csv:3: the row holds
# expect: --max-record-bytes
python3 - <<'PY'
with open("data/mc.csv", "w", encoding="utf-8") as f:
    f.write("question,a,b,answer\n")
    f.write("First-line drug for type 2 diabetes?,Metformin,Insulin,0\n")
    f.write('"' + "line\n" * (1 << 20) + '",Metformin,Insulin,0\n')
PY
cat > evals/table.yaml <<'YAML'
version: 1
name: table
datasets:
  mc: {path: data/mc.csv, format: csv}
tasks:
  - name: mc
    kind: multiple_choice
    dataset: mc
    prompt: "Question: {{ question }}\nAnswer:"
    choices: {fields: [a, b]}
    answer: {field: answer, as: index}
YAML
medrun lock >/dev/null 2>&1
commit
