"""``python -m edgefmnist``: the ``edgefmnist`` console script, for an environment whose scripts are not on PATH."""

from edgefmnist.launch import main

main()
