#!/usr/bin/env bash
# The "Beyond Normal" benchmark (benchmark-mi 0.1.3, its v1 list of 40 tasks, N = 5000, seeds
# 0..S-1) with our estimators called through the benchmark's own ExternalEstimator, i.e. as
# `infoaudit estimate FILE --estimator E --unit nats --output value`, beside the benchmark's own
# estimators on the same samples. Writes target/bmi/runs.csv (every run) and target/bmi/table.md.
#   bash benches/bmi.sh [bmi_run.py options]
# e.g. the paper's protocol in full (hours on 2 cores: the reference's neural bounds train for
# 10 000 steps each):
#   bash benches/bmi.sh --seeds 10 --reference bmi-ksg5,bmi-ksg10,bmi-cca,bmi-infonce,bmi-mine,bmi-nwj,bmi-dv
# BMI_VENV: the venv to use or create (default target/bmi-venv).
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${BMI_VENV:-target/bmi-venv}
if ! "$venv/bin/python" -c 'import bmi, jax' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q -r benches/bmi-requirements.txt
fi
cargo build --release --locked --bin infoaudit
exec "$venv/bin/python" benches/bmi_run.py --bin target/release/infoaudit "$@"
