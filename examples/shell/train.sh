#!/bin/sh
# One pbtune trial of the toy quadratic of Jaderberg et al. 2017 (Fig. 2), in POSIX sh + awk.
#
# theta = (theta0, theta1) climbs the surrogate Q^(theta | h) = 1.2 - (h0*theta0^2 + h1*theta1^2)
# by gradient ascent (step size 0.01) from PBTUNE_START_STEP to PBTUNE_END_STEP; the member is
# judged by the true Q(theta) = 1.2 - (theta0^2 + theta1^2), whose maximum is 1.2 at theta = 0.
# theta starts at (0.9, 0.9), or at the parent checkpoint's theta when PBT warm-starts this
# trial. See examples/toy_quadratic.py for the same problem in Python.
#
#   pbtune run --config examples/shell/study.yaml --command "sh examples/shell/train.sh"
set -eu
LC_ALL=C
export LC_ALL

h0=$PBTUNE_PARAM_H0
h1=$PBTUNE_PARAM_H1
start=$PBTUNE_START_STEP
end=$PBTUNE_END_STEP

if [ -n "$PBTUNE_PARENT_CHECKPOINT" ]; then
    read -r step theta0 theta1 < "$PBTUNE_PARENT_CHECKPOINT/state"
    if [ "$step" != "$start" ]; then
        echo "train.sh: checkpoint is at step $step, trial starts at $start" >&2
        exit 1
    fi
else
    theta0=0.9
    theta1=0.9
fi

# Prints: theta0 theta1 Q Q^
result=$(awk -v h0="$h0" -v h1="$h1" -v t0="$theta0" -v t1="$theta1" \
    -v start="$start" -v end="$end" 'BEGIN {
    for (s = start; s < end; s++) {
        t0 += 0.01 * (-2 * h0 * t0)
        t1 += 0.01 * (-2 * h1 * t1)
    }
    printf "%.17g %.17g %.17g %.17g\n", t0, t1, 1.2 - (t0 * t0 + t1 * t1),
        1.2 - (h0 * t0 * t0 + h1 * t1 * t1)
}')
set -- $result
[ "$#" -eq 4 ] || { echo "train.sh: awk printed '$result'" >&2; exit 1; }

# The checkpoint first, the metrics last: metrics mean the trial is complete.
printf '%s %s %s\n' "$end" "$1" "$2" > "$PBTUNE_CHECKPOINT_DIR/state"
printf '{"q": %s, "q_hat": %s}\n' "$3" "$4" > "$PBTUNE_METRICS_FILE"
