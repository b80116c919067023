# about: the training text edited (same size) and the state cache forged to hide it: `medrun lock` hashes the file itself and records the new hash instead of keeping the stale one
# fixture: trained
# run: medrun lock
# exit: 0
# expect: 1 changed
# writes: datasets.lock .medrun/state-v1.json
# check: medrun lock --check --verify
sed -i 's/wheeze/sneeze/' data/pt.txt
touch -d '1 hour ago' data/pt.txt
commit "same size, other words"
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
