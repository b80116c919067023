# about: a max gate on a word_perplexity of inf fails as a gate (exit 3) with the value shown as inf, the same on the cached second judgement
# fixture: trained
# run: medrun run runs/hostile.yaml
# exit: 3
# expect: dpo:zh/ppl/word_perplexity
# stdout: inf > max 50
# writes: .medrun/state-v1.json .medrun/runs-v1/* .medrun/objects-v1/**
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
sed -i 's|^  - {metric: suite/mc/acc, min: 0.5}$|&\n  - {metric: zh/ppl/word_perplexity, stage: dpo, max: 50}|' runs/hostile.yaml
medrun lock >/dev/null 2>&1
commit "a perplexity ceiling"
medrun run runs/hostile.yaml >/dev/null 2>&1 || true
