"""Testing tools that ship with the study, apart from the server: nothing in the running study
imports them (only the `simulate` command, whose bots drive a served study from outside).

- `driver`: a participant that walks the real HTTP flow (the simulate command's bots, tests, benchmarks);
- `synthetic`: random-pixel stimulus sets in the engine's format, for tests, benchmarks and pilots.
"""
