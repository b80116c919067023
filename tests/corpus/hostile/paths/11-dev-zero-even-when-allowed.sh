# about: with /dev allowed through --allow-outside, a symlink to /dev/zero is still refused as a character device
# fixture: project
# run: medrun --allow-outside /dev plan runs/hostile.yaml
# exit: 1
# timeout: 20
# expect: `data/pt.txt` is a character device, not a regular file
ln -sf /dev/zero data/pt.txt
commit
