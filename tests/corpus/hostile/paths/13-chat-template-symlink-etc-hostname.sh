# about: a Jinja chat template that is a symlink to /etc/hostname is refused before it can become a checkpoint's chat_template
# fixture: project
# run: medrun plan runs/hostile.yaml
# exit: 1
# expect: `templates/chat.jinja` leads outside the project root
# expect: /etc/hostname
mkdir templates
ln -s /etc/hostname templates/chat.jinja
sed -i 's|^evals: \[evals/suite.yaml\]|template: templates/chat.jinja\nevals: [evals/suite.yaml]|' runs/hostile.yaml
commit
