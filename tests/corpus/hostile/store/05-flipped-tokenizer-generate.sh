# about: one byte flipped in a checkpoint's tokenizer: `generate` refuses before loading anything, naming the file of the checkpoint that is damaged
# fixture: trained
# run: medrun generate latest:sft --prompt 'Asthma causes'
# exit: 1
# expect: `tokenizer.json` of output
# expect: is corrupt
# expect: medrun run runs/hostile.yaml
# writes: none
flip "$(obj sft tokenizer.json)"
