# about: one 50 MB line in the PT corpus is refused by its file:line before it is held in memory (it used to need 10 GB of RAM)
# fixture: project
# run: medrun run runs/hostile.yaml
# exit: 1
# timeout: 120
# expect: data/pt.txt:2: the line holds 52428800 bytes (50.0 MiB), over the limit of 4194304 bytes (4.0 MiB)
# expect: --max-record-bytes
# writes: .medrun .medrun/**
python3 - <<'PY'
lines = open("data/pt.txt", encoding="utf-8").read().splitlines()
with open("data/pt.txt", "w", encoding="utf-8") as f:
    f.write(lines[0] + "\n")
    f.write("fever " * (52428800 // 6) + "fever"[: 52428800 % 6] + "\n")
    for line in lines[1:]:
        f.write(line + "\n")
PY
medrun lock >/dev/null 2>&1
commit
