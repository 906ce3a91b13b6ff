#!/bin/bash
#BSUB -P PROJECT123
#BSUB -q batch
#BSUB -nnodes 2
#BSUB -W 1:30
#BSUB -J spline-nas-t0003
#BSUB -o /EXPERIMENT/trials/t0003/logs/lsf-%J.out
#BSUB -e /EXPERIMENT/trials/t0003/logs/lsf-%J.err
#BSUB -alloc_flags gpumps
#BSUB -wa USR1 -wt 10
# spline-nas trial t0003; submit with: bsub THIS_FILE

module load open-ce
export SPLINE_NAS_TRIAL_ID=t0003

# A follow-up job of a walltime chain has nothing to do once the result exists.
if [ -e /EXPERIMENT/trials/t0003/result.json ]; then
    echo "spline-nas: result file exists; nothing to run" >&2
    exit 0
fi

# The warning signal (-wa) reaches jsrun, which passes it on to the ranks. The trap
# keeps this shell running until jsrun exits.
trap 'echo "spline-nas: received SIGUSR1" >&2' USR1
jsrun -n 2 -r 1 -a 6 -g 6 -c 42 python -m jobs.train /EXPERIMENT/trials/t0003/spec.json
