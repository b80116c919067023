# about: the dataset file is a real file, but a parent directory on its path is a symlink out of the project; run refuses before training
# fixture: project
# run: medrun run runs/hostile.yaml
# exit: 1
# expect: `corpora/pt.txt` leads outside the project root
# expect: `corpora` is a symlink to
out=$(mktemp -d)
cp data/pt.txt "$out/pt.txt"
ln -s "$out" corpora
sed -i 's|corpus: {path: data/pt.txt, format: text}|corpus: {path: corpora/pt.txt, format: text}|' runs/hostile.yaml
commit
