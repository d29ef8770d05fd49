# The two set-up commands of the README: `make serve` (main job) and `make test` (test suite).
.PHONY: install install-test serve test

install:
	bash scripts/install.sh

install-test:
	bash scripts/install.sh --test

serve: install
	.venv/bin/m2f-ttt serve

test: install-test
	bash scripts/test_peers.sh
	.venv/bin/python -m pytest -q
