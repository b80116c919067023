# about: a FIFO among the shards of a dataset directory was skipped by lock but would block a reader; lock now refuses it by name
# fixture: project
# run: medrun lock
# exit: 1
# timeout: 20
# expect: `data/shards/b.txt` is a FIFO (named pipe), not a regular file
mkdir data/shards
cp data/pt.txt data/shards/a.txt
sed -i 's|corpus: {path: data/pt.txt, format: text}|corpus: {path: data/shards, format: text}|' runs/hostile.yaml
commit
mkfifo data/shards/b.txt
