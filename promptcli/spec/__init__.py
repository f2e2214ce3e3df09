"""What the user writes: templates, verbalizers and sweep files as strict pydantic models, and data files.

Entry points: `loading.load_template` / `load_verbalizer`, `sweepfile.load_sweep`, `data.load_dataset`;
`options` holds every closed set of option values.
"""
