# about: the SFT dataset is a FIFO; lock refuses it instead of hanging
# fixture: project
# run: medrun lock
# exit: 1
# timeout: 20
# expect: `data/sft.jsonl` is a FIFO (named pipe), not a regular file
rm data/sft.jsonl
mkfifo data/sft.jsonl
