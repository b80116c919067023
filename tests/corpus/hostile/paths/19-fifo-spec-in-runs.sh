# about: a FIFO named like a spec under runs/ would block lock's discovery in open(); lock refuses it instead
# fixture: project
# run: medrun lock
# exit: 1
# timeout: 20
# expect: runs/evil.yaml
# expect: FIFO
mkfifo runs/evil.yaml
