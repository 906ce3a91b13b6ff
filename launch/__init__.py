"""Launch backends: submit trial specs as jobs (local, Slurm, LSF) and poll their results."""
