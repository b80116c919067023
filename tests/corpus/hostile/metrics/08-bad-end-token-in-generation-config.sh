# about: a model directory whose generation_config.json names an end token the tokenizer does not have is refused before training, naming the file and the field
# fixture: trained
# run: medrun run runs/hostile.yaml
# exit: 1
# expect: generation_config.json
# expect: eos_token_id
# expect: 99999
# writes: .medrun/state-v1.json .medrun/keys-v1/** .medrun/objects-v1/** .medrun/runs-v1/*
medrun export latest:dpo models/base >/dev/null
printf '{"bos_token_id": null, "eos_token_id": [0, 99999], "pad_token_id": 0}\n' > models/base/generation_config.json
python3 - <<'PY'
text = open("runs/hostile.yaml", encoding="utf-8").read()
text = text.replace("  init: {hidden_size: 64, layers: 2, heads: 4, intermediate_size: 172}\n", "  from: models/base\n")
text = text.replace("tokenizer:\n  train: {dataset: corpus, vocab_size: 512}\n", "template: chatml\n")
open("runs/hostile.yaml", "w", encoding="utf-8").write(text)
PY
medrun lock >/dev/null 2>&1
commit "start from an exported model"
