# about: a training dataset that is a symlink to /etc/passwd is refused by lock, naming the link and its target
# fixture: project
# run: medrun lock
# exit: 1
# expect: `data/pt.txt` leads outside the project root
# expect: /etc/passwd
# expect: --allow-outside
ln -sf /etc/passwd data/pt.txt
commit
