#!/usr/bin/env bash
# Installs Synapse (PyPI matrix-synapse, pinned) into a virtualenv if it is not there yet, and
# prints the virtualenv's python. Used by the Synapse interoperability test and bench/run.sh.
#
#   SYNAPSE_VENV   where the virtualenv lives (default ~/.cache/palisade/synapse-venv)
#   SYNAPSE_VERSION  the version to install (default below)
set -euo pipefail
SYNAPSE_VERSION="${SYNAPSE_VERSION:-1.163.2}"
VENV="${SYNAPSE_VENV:-$HOME/.cache/palisade/synapse-venv}"
if ! "$VENV/bin/python" -c "import synapse, sys; sys.exit(synapse.__version__ != '$SYNAPSE_VERSION')" 2>/dev/null; then
  python3 -m venv "$VENV" >&2
  "$VENV/bin/pip" install -q --disable-pip-version-check "matrix-synapse==$SYNAPSE_VERSION" >&2
fi
echo "$VENV/bin/python"
