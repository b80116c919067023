# about: `tokenizer.path` names a file that is a symlink to a tokenizer.json outside the project; plan refuses it
# fixture: project
# run: medrun plan runs/hostile.yaml
# exit: 1
# expect: `tok/tokenizer.json` leads outside the project root
out=$(mktemp -d)
printf '{"version": "1.0", "model": {"type": "BPE", "vocab": {}, "merges": []}}\n' > "$out/tokenizer.json"
mkdir tok
ln -s "$out/tokenizer.json" tok/tokenizer.json
sed -i 's|  train: {dataset: corpus, vocab_size: 512}|  path: tok/tokenizer.json|' runs/hostile.yaml
commit
