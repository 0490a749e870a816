"""The job: its file, its rows' sources, templates, row keys, and the plan made before sending."""
