# Each target sets the environment up first (a no-op when it is up to date).
.PHONY: setup compare test lint clean

setup:
	@bash scripts/setup.sh

# One cell per core (--jobs auto): the same per-episode results as one cell at a time.
compare: setup
	@.venv/bin/metabench compare --jobs auto $(ARGS)

test: setup
	@.venv/bin/python -m pytest $(ARGS)

lint: setup
	@.venv/bin/ruff check .
	@.venv/bin/mypy
	@.venv/bin/lint-imports

clean:
	rm -rf .venv .pytest_cache build *.egg-info
