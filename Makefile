# The two commands of the README: `make run` and `make test` (the full suite, as CI runs it).
# `make check`: lint and the fast tier (every test not marked slow), for development.
.PHONY: setup run test check lint

setup:
	./setup.sh

run: setup
	.venv/bin/snakemake --cores 2 --resources gpu=1

lint:
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/snakefmt --check Snakefile workflow
	.venv/bin/snakemake --lint
	.venv/bin/lint-imports

check: lint
	.venv/bin/python -m pytest -ra -m "not slow"

test:
	./setup.sh test
	$(MAKE) lint
	.venv/bin/python -m pytest -ra
