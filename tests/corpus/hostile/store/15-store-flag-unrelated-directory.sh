# about: `--store` pointing at an unrelated, non-empty directory: `plan` reads nothing from it and drops no state cache into it
# fixture: project
# run: medrun --store notes plan runs/hostile.yaml
# exit: 0
# stdout: to run
# writes: none
# check: test "$(ls -A notes)" = todo.txt
mkdir notes
echo 'buy milk' > notes/todo.txt
# Old enough that their digests would be cached (not "racily clean").
touch -d '1 hour ago' data/*
commit "a directory of notes"
