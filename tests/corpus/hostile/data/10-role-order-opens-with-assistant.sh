# about: an SFT conversation that opens with the assistant (an answer to nothing, silently dropped before) is refused
# fixture: trained
# run: medrun run runs/hostile.yaml
# exit: 1
# expect: data/sft.jsonl:1: field "conversations[0].from": the conversation opens with an assistant turn
# writes: .medrun/**
cat > data/sft.jsonl <<'JSONL'
{"conversations":[{"from":"gpt","value":"Take two aspirin."},{"from":"human","value":"I have chest pain."},{"from":"gpt","value":"Call emergency services now."}]}
JSONL
medrun lock >/dev/null 2>&1
commit
