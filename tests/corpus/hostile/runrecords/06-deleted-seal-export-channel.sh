# about: the promoted run's seal is deleted (so its record would read as an interrupted run's); `export prod` must refuse, naming the entry and the missing seal
# fixture: promoted
# run: medrun export prod out
# exit: 1
# expect: promotions.yaml:
# expect: lost its seal
# writes: none
rm -f "$STORE"/runs-v1/*.seal
