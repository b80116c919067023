# about: a cached results object hand-edited to hold null fails its hash: promote never reads the null (no JSON type error), it evaluates again, judges fresh results and restores the object
# fixture: trained
# run: medrun promote latest:dpo --to prod
# exit: 0
# expect: damaged
# stdout: pass
# writes: promotions.yaml .medrun/**
# check: medrun verify
# check: grep -q 'channel: "prod"' promotions.yaml
python3 - "$STORE" "$(tree_id dpo)" <<'PY'
import json, os, sys
STORE, CHECKPOINT = sys.argv[1], sys.argv[2]

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

out = json.load(open(results_key(CHECKPOINT, "suite"), encoding="utf-8"))
tree = json.load(open(store_path(out["output"]), encoding="utf-8"))
path = store_path(tree["entries"]["results.json"]["object"])
text = open(path, encoding="utf-8").read()
edited = text.replace('"suite/mc/acc": 1.0', '"suite/mc/acc": null')
if edited == text:
    sys.exit("suite/mc/acc not found in " + path)
os.chmod(path, 0o644)
open(path, "w", encoding="utf-8").write(edited)
PY
