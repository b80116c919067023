# about: a Unix socket among a dataset directory's shards was silently left out of the lock; lock now refuses it by name
# fixture: project
# run: medrun lock
# exit: 1
# expect: `data/shards/sock` is a socket, not a regular file
mkdir data/shards
cp data/pt.txt data/shards/a.txt
sed -i 's|corpus: {path: data/pt.txt, format: text}|corpus: {path: data/shards, format: text}|' runs/hostile.yaml
commit
python3 -c 'import socket, sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])' data/shards/sock
