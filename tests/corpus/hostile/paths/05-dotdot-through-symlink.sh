# about: a relative symlink inside data/ whose target climbs out with `..` (data/up -> ../../..) is caught after resolution, not by the spec's lexical path check
# fixture: project
# run: medrun lock
# exit: 1
# expect: `data/up/secret.txt` leads outside the project root
# expect: `data/up` is a symlink to
out=$(mktemp -d)
printf 'api_key=hunter2\n' > "$out/secret.txt"
ln -s "$(realpath --relative-to=data "$out")" data/up
sed -i 's|corpus: {path: data/pt.txt, format: text}|corpus: {path: data/up/secret.txt, format: text}|' runs/hostile.yaml
commit
