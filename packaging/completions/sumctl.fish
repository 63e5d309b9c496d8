complete --keep-order --exclusive --command sumctl --arguments "(COMPLETE=fish sumctl -- (commandline --current-process --tokenize --cut-at-cursor) (commandline --current-token))"
