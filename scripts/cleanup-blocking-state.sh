#!/usr/bin/env bash
# The playbook's name for the batch cleanup; the same as cleanup-blocking-coordination.sh.
exec "$(dirname "$0")/cleanup-blocking-coordination.sh" "$@"
