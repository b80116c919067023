# about: an SFT conversation with two user turns in a row (MedicalGPT silently joins them) is refused, naming the turn
# fixture: trained
# run: medrun run runs/hostile.yaml
# exit: 1
# expect: data/sft.jsonl:1: field "conversations[1].from": two user turns in a row (conversations[0] and conversations[1])
# writes: .medrun/**
cat > data/sft.jsonl <<'JSONL'
{"conversations":[{"from":"human","value":"I have chest pain."},{"from":"human","value":"It spreads to my left arm."},{"from":"gpt","value":"Call emergency services now."}]}
JSONL
medrun lock >/dev/null 2>&1
commit
