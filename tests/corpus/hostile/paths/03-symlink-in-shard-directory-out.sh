# about: one shard inside a dataset directory is a symlink to /etc/passwd; lock refuses the directory, naming that shard
# fixture: project
# run: medrun lock
# exit: 1
# expect: `data/shards/b.txt` leads outside the project root
# expect: /etc/passwd
mkdir data/shards
cp data/pt.txt data/shards/a.txt
ln -s /etc/passwd data/shards/b.txt
sed -i 's|corpus: {path: data/pt.txt, format: text}|corpus: {path: data/shards, format: text}|' runs/hostile.yaml
commit
