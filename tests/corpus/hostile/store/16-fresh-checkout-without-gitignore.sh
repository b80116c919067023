# about: a fresh checkout whose .gitignore does not mention the store: the first `run` works, because the store carries its own .gitignore before anything lands in it
# fixture: project
# run: medrun run runs/hostile.yaml
# exit: 0
# stdout: 3 stage(s) run
# writes: .medrun .medrun/**
# check: test -z "$(git status --porcelain)"
# check: medrun verify
git rm -q --cached .gitignore
rm .gitignore
touch -d '1 hour ago' data/* datasets.lock runs/* evals/*
commit "no .gitignore"
