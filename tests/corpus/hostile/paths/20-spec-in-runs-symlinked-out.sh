# about: a spec under runs/ that is a symlink to a spec outside the project is refused by lock, naming the link
# fixture: project
# run: medrun lock
# exit: 1
# expect: `runs/evil.yaml` leads outside the project root
out=$(mktemp -d)
sed 's/^name: hostile/name: evil/' runs/hostile.yaml > "$out/evil.yaml"
ln -s "$out/evil.yaml" runs/evil.yaml
commit
