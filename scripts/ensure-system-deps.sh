#!/usr/bin/env bash
# Installs (as root) or names (otherwise) the Debian packages the test suite needs.
set -euo pipefail

missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
# nginx -t checks the example site in deploy/ (the deployment test).
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
# A single-node SLURM cluster (tests/slurmhelp.py) for the engine's `--executor slurm`.
{ [ -x /usr/sbin/slurmctld ] && [ -x /usr/sbin/slurmd ] && command -v sbatch >/dev/null; } || missing+=(slurm-wlm)
[ -x /usr/sbin/munged ] || missing+=(munge)
[ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] || missing+=(dataset-fashion-mnist)
# R with lme4 and ordinal: the analysis tests cross-check glmer / clmm against the Python models.
Rscript -e 'suppressMessages({library(lme4); library(ordinal)})' >/dev/null 2>&1 || missing+=(r-cran-lme4 r-cran-ordinal)

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "The tests need these Debian packages, which are missing: ${missing[*]}" >&2
  echo "Install them with:  sudo apt-get install -y ${missing[*]}   and run 'make test' again." >&2
  exit 1
fi
echo "Installing Debian packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq "${missing[@]}" >/dev/null
