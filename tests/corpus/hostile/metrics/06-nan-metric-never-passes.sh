# about: a NaN metric in cached results (the store rewritten consistently, every hash right) never passes a gate: promote fails the gate on it (exit 3) instead of failing to read the results
# fixture: trained
# run: medrun promote latest:dpo --to prod
# exit: 3
# expect: zh/ppl/bits_per_byte
# stdout: is nan, not a number
# writes: .medrun/state-v1.json
# check: test ! -e promotions.yaml
cat > evals/zh.yaml <<'YAML'
version: 1
name: zh
datasets:
  heldout: {path: data/zh.jsonl, format: jsonl}
tasks:
  - name: ppl
    kind: perplexity
    dataset: heldout
    text: "{{ text }}"
YAML
python3 - <<'PY'
import json
texts = [
    "发烧是身体对感染的一种常见反应。成年人体温超过三十八度时应当多喝水、注意休息，并观察是否出现呼吸困难、胸痛或意识模糊等危险信号。如果高烧持续三天以上，或者伴有剧烈头痛和颈部僵硬，请立即就医，不要自行服用大量退烧药。",
    "高血压通常没有明显症状，所以被称为无声的杀手。长期血压升高会损害心脏、肾脏和大脑的血管。控制高血压的方法包括减少食盐摄入、规律运动、戒烟限酒，以及按照医生的处方按时服药，并定期在家测量血压做好记录。",
]
with open("data/zh.jsonl", "w", encoding="utf-8") as f:
    for t in texts:
        f.write(json.dumps({"text": t}, ensure_ascii=False) + "\n")
PY
sed -i 's|^evals: \[evals/suite.yaml\]$|evals: [evals/suite.yaml, evals/zh.yaml]|' runs/hostile.yaml
sed -i 's|^  - {metric: suite/mc/acc, min: 0.5}$|&\n  - {metric: zh/ppl/bits_per_byte, stage: dpo, max: 100}|' runs/hostile.yaml
medrun lock >/dev/null 2>&1
commit "a bits-per-byte ceiling"
medrun run runs/hostile.yaml >/dev/null 2>&1
# Rewrite the cached zh results of the dpo checkpoint with bits_per_byte = "nan": a new
# results.json object, a new results tree, and the eval key pointing at it (BLAKE3 by hand).
python3 - "$STORE" "$(tree_id dpo)" <<'PY'
import json, os, sys
STORE, CHECKPOINT = sys.argv[1], sys.argv[2]
import sys
M = 0xFFFFFFFF
IV = [0x6A09E667, 0xBB67AE85, 0x3C6EF372, 0xA54FF53A, 0x510E527F, 0x9B05688C, 0x1F83D9AB, 0x5BE0CD19]
PERM = [2, 6, 3, 10, 7, 0, 4, 13, 1, 11, 12, 5, 9, 14, 15, 8]
START, END, PARENT, ROOT = 1, 2, 4, 8

def rotr(x, n):
    return ((x >> n) | (x << (32 - n))) & M

def g(s, a, b, c, d, x, y):
    s[a] = (s[a] + s[b] + x) & M; s[d] = rotr(s[d] ^ s[a], 16)
    s[c] = (s[c] + s[d]) & M; s[b] = rotr(s[b] ^ s[c], 12)
    s[a] = (s[a] + s[b] + y) & M; s[d] = rotr(s[d] ^ s[a], 8)
    s[c] = (s[c] + s[d]) & M; s[b] = rotr(s[b] ^ s[c], 7)

def compress(cv, block, counter, blen, flags):
    m = [int.from_bytes(block[4 * i:4 * i + 4], "little") for i in range(16)]
    s = cv[:] + IV[:4] + [counter & M, counter >> 32, blen, flags]
    for r in range(7):
        g(s, 0, 4, 8, 12, m[0], m[1]); g(s, 1, 5, 9, 13, m[2], m[3])
        g(s, 2, 6, 10, 14, m[4], m[5]); g(s, 3, 7, 11, 15, m[6], m[7])
        g(s, 0, 5, 10, 15, m[8], m[9]); g(s, 1, 6, 11, 12, m[10], m[11])
        g(s, 2, 7, 8, 13, m[12], m[13]); g(s, 3, 4, 9, 14, m[14], m[15])
        m = [m[p] for p in PERM]
    return [s[i] ^ s[i + 8] for i in range(8)]

def chunk_output(data, index):
    """(cv, block, counter, len, flags) of a chunk's last block, before the root flag."""
    blocks = [data[i:i + 64] for i in range(0, len(data), 64)] or [b""]
    cv = IV[:]
    for k, b in enumerate(blocks):
        flags = (START if k == 0 else 0) | (END if k == len(blocks) - 1 else 0)
        if k == len(blocks) - 1:
            return (cv, b.ljust(64, b"\0"), index, len(b), flags)
        cv = compress(cv, b, index, 64, flags)

def blake3(data):
    chunks = [data[i:i + 1024] for i in range(0, len(data), 1024)] or [b""]
    stack = []
    for i, c in enumerate(chunks[:-1]):
        cv, b, ctr, n, f = chunk_output(c, i)
        cv = compress(cv, b, ctr, n, f)
        total = i + 1
        while total & 1 == 0:
            right = cv
            left = stack.pop()
            cv = compress(IV, b"".join(w.to_bytes(4, "little") for w in left + right), 0, 64, PARENT)
            total >>= 1
        stack.append(cv)
    out = chunk_output(chunks[-1], len(chunks) - 1)
    while stack:
        cv, b, ctr, n, f = out
        right = compress(cv, b, ctr, n, f)
        out = (IV, b"".join(w.to_bytes(4, "little") for w in stack.pop() + right), 0, 64, PARENT)
    cv, b, ctr, n, f = out
    return b"".join(w.to_bytes(4, "little") for w in compress(cv, b, ctr, n, f | ROOT)).hex()

def store_path(oid):
    return os.path.join(STORE, "objects-v1", oid[:2], oid[2:])

def results_key(checkpoint, suite):
    """The eval key of SUITE's results on CHECKPOINT, and its .out file."""
    for dirpath, _, names in os.walk(os.path.join(STORE, "keys-v1")):
        for n in names:
            if not n.endswith(".json"):
                continue
            inputs = json.load(open(os.path.join(dirpath, n), encoding="utf-8"))
            if (inputs.get("kind") == "eval" and inputs.get("checkpoint") == checkpoint
                    and inputs.get("suite", {}).get("name") == suite):
                return os.path.join(dirpath, n[:-5] + ".out")
    sys.exit(f"no cached results of suite {suite} on {checkpoint}")

def put(data):
    oid = blake3(data)
    os.makedirs(os.path.dirname(store_path(oid)), exist_ok=True)
    with open(store_path(oid), "wb") as f:
        f.write(data)
    return oid

out_path = results_key(CHECKPOINT, "zh")
out = json.load(open(out_path, encoding="utf-8"))
tree = json.load(open(store_path(out["output"]), encoding="utf-8"))
entry = tree["entries"]["results.json"]
results = json.load(open(store_path(entry["object"]), encoding="utf-8"))
results["metrics"]["zh/ppl/bits_per_byte"] = "nan"
results["tasks"]["ppl"]["metrics"]["bits_per_byte"]["value"] = "nan"
data = (json.dumps(results, indent=2, ensure_ascii=False) + "\n").encode()
entry["object"], entry["bytes"] = put(data), len(data)
out["output"] = put(json.dumps(tree, separators=(",", ":")).encode())
os.chmod(out_path, 0o644)
with open(out_path, "w", encoding="utf-8") as f:
    json.dump(out, f)
PY
