#!/usr/bin/env bash
# Regenerate the shell completion scripts from the CLI (tests/test_cli.py fails when they drift).
set -euo pipefail
cd "$(dirname "$0")"
_SEGTOOL_COMPLETE=bash_source segtool > segtool.bash
_SEGTOOL_COMPLETE=zsh_source segtool > segtool.zsh
_SEGTOOL_COMPLETE=fish_source segtool > segtool.fish
