"""The instructor side of lab5_dvml: reference.py (the one copy of its solutions), notebook.py (the notebook's source), hidden.py (its hidden checks) and reference_outputs.pt."""
