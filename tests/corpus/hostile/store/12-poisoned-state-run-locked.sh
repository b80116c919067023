# about: the training text edited (same size) and the state cache forged to say it still has the locked hash: `run --locked` hashes the file itself and refuses
# fixture: trained
# run: medrun run --locked runs/hostile.yaml
# exit: 1
# expect: differs from datasets.lock
# expect: data/pt.txt
# writes: .medrun/state-v1.json
sed -i 's/wheeze/sneeze/' data/pt.txt
touch -d '1 hour ago' data/pt.txt
commit "same size, other words"
# The forged entry: the file's current stat, the locked hash and record count.
python3 - "$STORE/state-v1.json" data/pt.txt <<'PY'
import json, os, re, sys
state, rel = sys.argv[1], sys.argv[2]
lock = open("datasets.lock").read()
locked = re.search(r'"%s":\n(?:    .*\n)*?    blake3: ([0-9a-f]{64})' % re.escape(rel), lock).group(1)
st = os.stat(rel)
try:
    cache = json.load(open(state))
except (OSError, ValueError):
    cache = {"version": 1, "entries": {}}
cache["entries"][os.path.realpath(rel)] = {
    "stat": {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "ctime_ns": st.st_ctime_ns, "inode": st.st_ino},
    "blake3": locked,
    "records": {"lines": 2},
}
open(state, "w").write(json.dumps(cache))
PY
