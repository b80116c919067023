# about: one byte flipped in a checkpoint whose results are cached: `eval` does not report the cached scores of bytes that are no longer there
# fixture: trained
# run: medrun eval latest:dpo --suite evals/suite.yaml
# exit: 1
# expect: is damaged
# expect: `model.safetensors` of output
# writes: none
flip "$(obj dpo model.safetensors)"
