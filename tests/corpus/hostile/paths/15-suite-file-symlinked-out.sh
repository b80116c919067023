# about: an eval suite under evals/ that is a symlink to a suite outside the project is refused by lock
# fixture: project
# run: medrun lock
# exit: 1
# expect: `evals/suite.yaml` leads outside the project root
out=$(mktemp -d)
cp evals/suite.yaml "$out/suite.yaml"
ln -sf "$out/suite.yaml" evals/suite.yaml
commit
