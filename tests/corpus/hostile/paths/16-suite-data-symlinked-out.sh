# about: the eval data a suite reads is swapped for a symlink to an identical copy outside the project; eval refuses to read it
# fixture: trained
# run: medrun eval latest:dpo --suite evals/suite.yaml --no-cache
# exit: 1
# expect: `data/mc.jsonl` leads outside the project root
out=$(mktemp -d)
cp data/mc.jsonl "$out/mc.jsonl"
ln -sf "$out/mc.jsonl" data/mc.jsonl
commit
