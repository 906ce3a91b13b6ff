"""Code that runs on compute nodes: models, data and distributed training.

Nothing here imports ``orchestrator`` or ``launch``.
"""
