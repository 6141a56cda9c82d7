"""Jinja templates of the study app; installed as the `study_templates` package (see pyproject.toml)."""
