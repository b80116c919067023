# about: a DPO pair with "chosen" written twice is refused, naming file:line and the key
# fixture: trained
# run: medrun run runs/hostile.yaml
# exit: 1
# expect: data/dpo.jsonl:1:
# expect: duplicate key "chosen"
# writes: .medrun/**
cat > data/dpo.jsonl <<'JSONL'
{"conversations":[{"from":"human","value":"Can I stop my insulin?"}],"chosen":"Not without your doctor.","rejected":"Yes.","chosen":"Yes, today."}
JSONL
medrun lock >/dev/null 2>&1
commit
