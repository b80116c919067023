#!/usr/bin/env bash
# The built-in medical demo, end to end, on a fresh clone:
#   1. build medrun (release);
#   2. regenerate the demo corpus from medrun's fact table (byte-identical to data/demo);
#   3. check the data against datasets.lock;
#   4. train PT -> SFT -> DPO from scratch, scoring every stage with evals/medical-demo.yaml
#      and judging the gates (exit 3 if a gate fails);
#   5. promote the DPO checkpoint to the `demo` channel (recorded in promotions.yaml);
#   6. show where everything is.
# About 2 minutes on 2 CPU cores after the build (4 to 8 minutes from scratch). Re-running it
# reuses every cached stage and result (well under a second).
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --locked
medrun=target/release/medrun

echo "== demo data"
"$medrun" demo-data --out data/demo
echo "== lock"
"$medrun" lock --check
echo "== run (PT -> SFT -> DPO, evaluated and gated)"
"$medrun" run runs/demo.yaml
echo "== promote"
"$medrun" promote latest:dpo --to demo
echo "== where things are"
echo "store:      .medrun/ (content-addressed; see docs/reference/store.md)"
echo "lineage:    $medrun lineage demo"
echo "try it:     $medrun generate demo --chat --prompt 'What is the usual first treatment for asthma?'"
echo "export:     $medrun export demo out/demo-model   (loads in transformers)"
echo "reproduce:  $medrun reproduce latest"
