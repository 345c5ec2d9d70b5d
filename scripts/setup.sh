#!/usr/bin/env bash
# Set up harness on a fresh Debian/Ubuntu machine: system packages, a virtual environment in
# .venv, the package with its test and ffcv extras. Idempotent: a second run installs nothing.
#   scripts/setup.sh            set up only
#   scripts/setup.sh --default  set up, then run the default job on the embedded Fashion-MNIST
#   scripts/setup.sh --test     set up, plus what the tests use (a headless browser, Slurm, pdflatex)
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
  ""|--default|--test) ;;
  -h|--help) sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) echo "setup: unknown argument '$1' (use --default, --test or nothing; --help)" >&2; exit 2 ;;
esac

APT_PACKAGES=(dataset-fashion-mnist pkg-config libturbojpeg0-dev libopencv-dev)
# the tests also use a headless browser, a private one-node Slurm (scripts/slurm-local.sh) and
# pdflatex with booktabs (leaderboard.tex compiles: 48 MB to download, 147 MB installed)
[ "${1:-}" = "--test" ] && APT_PACKAGES+=(chromium slurmctld slurmd slurm-client munge
  texlive-latex-base texlive-latex-recommended)
PYTHON=${PYTHON:-python3}

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ! "$PYTHON" -c 'import venv, ensurepip' 2>/dev/null; then missing+=(python3-venv); fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing system packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
stamp=.venv/.harness-install
want=$(cat setup.py | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing harness and its Python dependencies into .venv"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e '.[dev,ffcv]'
  echo "$want" > "$stamp"
fi

if [ "${1:-}" = "--default" ]; then
  .venv/bin/harness run recipes/fashion_mnist/resnet18_ce_full.yaml
fi
