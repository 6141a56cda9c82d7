"""`python -m engine.regimes`: the regime table that docs/engine.md carries (a test keeps the two equal)."""
from engine.regimes import markdown_table

print(markdown_table(), end="")
