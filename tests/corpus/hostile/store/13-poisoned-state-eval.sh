# about: the eval data edited (same size) and the state cache forged to say it still has the locked hash: `eval` hashes the file itself, refuses, and does not serve cached scores of the old data
# fixture: trained
# run: medrun eval latest:dpo --suite evals/suite.yaml
# exit: 1
# expect: differs from datasets.lock
# expect: suite/mc
# writes: .medrun/state-v1.json
sed -i 's/Metformin/Metformyn/' data/mc.jsonl
touch -d '1 hour ago' data/mc.jsonl
commit "same size, other answer text"
python3 - "$STORE/state-v1.json" data/mc.jsonl <<'PY'
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
    "records": {"lines": 1},
}
open(state, "w").write(json.dumps(cache))
PY
