# about: a dataset directory of shards that is a symlink to a directory outside the project is refused by plan
# fixture: project
# run: medrun plan runs/hostile.yaml
# exit: 1
# expect: `data/shards` leads outside the project root
# expect: is a symlink to
out=$(mktemp -d)
printf 'outside document one\noutside document two\n' > "$out/a.txt"
ln -s "$out" data/shards
sed -i 's|corpus: {path: data/pt.txt, format: text}|corpus: {path: data/shards, format: text}|' runs/hostile.yaml
commit
