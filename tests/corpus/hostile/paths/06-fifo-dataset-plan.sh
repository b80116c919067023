# about: the PT dataset is a FIFO; plan refuses it from its stat instead of blocking in open()
# fixture: project
# run: medrun plan runs/hostile.yaml
# exit: 1
# timeout: 20
# expect: `data/pt.txt` is a FIFO (named pipe), not a regular file
rm data/pt.txt
mkfifo data/pt.txt
