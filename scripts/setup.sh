#!/usr/bin/env bash
# Set up droplab in ./.venv: a virtual environment, PyTorch's CPU build first, droplab with all
# its extras, and Fashion-MNIST where the machine allows. Idempotent: a second run takes a second.
#   TORCH_SPEC   what to install for torch (default torch==2.13.0, the CPU build on this machine;
#                elsewhere e.g. "torch --index-url https://download.pytorch.org/whl/cpu")
#   WITH_BROWSER=1  also install Debian's chromium (for the report's browser test)
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
VENV=.venv
say() { printf '\033[1m[setup]\033[0m %s\n' "$*" >&2; }

if [ ! -x "$VENV/bin/python" ]; then
  say "creating $VENV with $($PYTHON --version)"
  "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)

# install torch alone first: a bare `torch` requirement would pull a multi-GB CUDA build
if ! "$VENV/bin/python" -c "import importlib.util as u, sys; sys.exit(u.find_spec('torch') is None)"; then
  say "installing $TORCH_SPEC (CPU)"
  # shellcheck disable=SC2086
  "${PIP[@]}" install $TORCH_SPEC
fi

stamp="$VENV/.droplab-$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  say "installing droplab[all] (editable)"
  "${PIP[@]}" install -e ".[all]"
  rm -f "$VENV"/.droplab-*
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
