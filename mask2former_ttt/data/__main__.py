"""``python -m mask2former_ttt.data ROOT [...]``: generate the synthetic dataset (see :mod:`.generate`)."""

from .generate import main

main()
