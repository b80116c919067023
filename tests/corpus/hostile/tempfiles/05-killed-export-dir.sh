# about: the half-written .medrun-export-* directory of a killed export is removed by the next export into the same parent, which succeeds
# fixture: trained
# run: medrun export latest:dpo exports/model
# exit: 0
# writes: exports/**
# check: test -z "$(ls -A exports | grep medrun-export || true)"
# check: test -f exports/model/model.safetensors
# The pid of a process that has exited, as a killed medrun's would be.
true & dead=$!; wait "$dead"
mkdir -p "exports/.medrun-export-$dead-1761000000000000000"
echo partial > "exports/.medrun-export-$dead-1761000000000000000/model.safetensors"
