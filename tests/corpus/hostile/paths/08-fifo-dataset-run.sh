# about: the DPO dataset is a FIFO; run (even with --allow-dirty) refuses it before any stage instead of hanging
# fixture: project
# run: medrun run runs/hostile.yaml --allow-dirty
# exit: 1
# timeout: 20
# expect: `data/dpo.jsonl` is a FIFO (named pipe), not a regular file
rm data/dpo.jsonl
mkfifo data/dpo.jsonl
