# about: `model.from` names a directory that is a symlink to a model directory outside the project; lock refuses it
# fixture: project
# run: medrun lock
# exit: 1
# expect: `models/base` leads outside the project root
out=$(mktemp -d)
printf '{"model_type": "llama"}\n' > "$out/config.json"
printf 'not really weights\n' > "$out/model.safetensors"
mkdir models
ln -s "$out" models/base
python3 - <<'PY'
import re
p = "runs/hostile.yaml"
s = open(p).read()
s = s.replace("  init: {hidden_size: 64, layers: 2, heads: 4, intermediate_size: 172}\n", "  from: models/base\n")
s = re.sub(r"tokenizer:\n  train: \{dataset: corpus, vocab_size: 512\}\n", "", s)
open(p, "w").write(s)
PY
commit
