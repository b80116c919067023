# about: the eval data of a suite is a FIFO; eval refuses it instead of hanging
# fixture: trained
# run: medrun eval latest:dpo --suite evals/suite.yaml --no-cache
# exit: 1
# timeout: 20
# expect: `data/mc.jsonl` is a FIFO (named pipe), not a regular file
rm data/mc.jsonl
mkfifo data/mc.jsonl
