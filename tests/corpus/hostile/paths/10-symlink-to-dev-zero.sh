# about: a dataset that is a symlink to /dev/zero is refused at once instead of being read until memory runs out
# fixture: project
# run: medrun lock
# exit: 1
# timeout: 20
# expect: `data/pt.txt` leads outside the project root
# expect: /dev/zero
ln -sf /dev/zero data/pt.txt
commit
