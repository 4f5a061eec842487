"""What measures a bundle on the host: the cold-start smoke test and sizing, each running
the model in a child process (``_smoke_child.py``, ``_sizing_child.py``) found by path."""
