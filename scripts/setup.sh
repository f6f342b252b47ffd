#!/usr/bin/env bash
# Set up droplab in ./.venv: a virtual environment, PyTorch's CPU build first, droplab (editable)
# with the extras asked for, and Fashion-MNIST where the machine allows. Idempotent: a second run
# takes a second.
#   EXTRAS       droplab's extras to install (default fast,report: what the demo needs;
#                scripts/test asks for all,test)
#   TORCH_SPEC   what to install for torch, verbatim (default: torch==2.13.0 from PyTorch's CPU
#                wheel index, https://download.pytorch.org/whl/cpu, falling back to the plain pin
#                where that index cannot be reached)
#   WITH_BROWSER=1  also install Debian's chromium (for the report's browser test)
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
TORCH_PIN=torch==2.13.0
TORCH_INDEX=https://download.pytorch.org/whl/cpu
EXTRAS=${EXTRAS:-fast,report}
VENV=.venv
say() { printf '\033[1m[setup]\033[0m %s\n' "$*" >&2; }

if [ ! -x "$VENV/bin/python" ]; then
  say "creating $VENV with $($PYTHON --version)"
  "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)

# install torch alone first: from PyPI a bare `torch` (or the pin) resolves on Linux to the CUDA
# build, which pulls GBs of CUDA wheels; PyTorch's own CPU index has the CPU build. The index is
# asked once, without retries, so a machine that cannot reach it falls back within seconds.
install_torch() {
  if [ -n "${TORCH_SPEC:-}" ]; then
    say "installing $TORCH_SPEC (TORCH_SPEC)"
    # shellcheck disable=SC2086
    "${PIP[@]}" install $TORCH_SPEC
  else
    say "installing $TORCH_PIN (the CPU build) from $TORCH_INDEX"
    if ! "${PIP[@]}" install "$TORCH_PIN" --index-url "$TORCH_INDEX" --timeout 15 --retries 0 \
      2>/dev/null; then
      say "$TORCH_INDEX cannot be reached; installing $TORCH_PIN from the configured index"
      "${PIP[@]}" install "$TORCH_PIN"
    fi
  fi
}
if ! "$VENV/bin/python" -c "import importlib.util as u, sys; sys.exit(u.find_spec('torch') is None)"; then
  install_torch
fi

hash=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)
stamp="$VENV/.droplab-$hash-${EXTRAS//,/-}"
if [ ! -f "$stamp" ]; then
  say "installing droplab[$EXTRAS] (editable)"
  "${PIP[@]}" install -e ".[$EXTRAS]"
  find "$VENV" -maxdepth 1 -name '.droplab-*' ! -name ".droplab-$hash-*" -delete
  touch "$stamp"
fi

# Fashion-MNIST: Debian's package where we are root on Debian; otherwise the loader downloads it
# into ~/.cache/droplab on first use.
apt_install() {
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "apt-get install $*"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@") >/dev/null \
      || say "apt-get install $* failed; continuing without it"
  fi
}
if [ ! -e /usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz ] && [ -z "${DROPLAB_DATA:-}" ]; then
  apt_install dataset-fashion-mnist
fi
if [ "${WITH_BROWSER:-0}" = 1 ] && ! command -v chromium >/dev/null; then
  apt_install chromium
fi
