#!/bin/bash
# The notebook images' ENTRYPOINT as the node agent runs it (test/dev only, never shipped).
#
# In a cluster a notebook container has no `command` (KubeSpawner sets `args` only), so the image's
# ENTRYPOINT runs first: docker-stacks' start.sh, which sources every before-notebook.d/*.sh hook
# (and runs the executable others), then execs the server. The node agent has no image, so it runs
# this instead, with the images' own hooks (images/common/before-notebook.d, installed into the
# session venv beside this file): the part of start.sh that matters here, run as the pod's user
# (start.sh's root-to-NB_USER switch has no counterpart: the agent already dropped privileges).
# Usage: datalake-image-start COMMAND [ARGS...]
hooks="$(dirname "$(readlink -f "$0")")/../share/datalake/before-notebook.d"
for f in "${hooks}"/*; do
    [[ -e "${f}" ]] || continue
    case "${f}" in
        *.sh)
            echo "Sourcing shell script: ${f}" >&2
            # shellcheck disable=SC1090
            source "${f}" || echo "${f} has failed, continuing execution" >&2
            ;;
        *)
            if [[ -x "${f}" ]]; then
                echo "Running executable: ${f}" >&2
                "${f}" || echo "${f} has failed, continuing execution" >&2
            fi
            ;;
    esac
done
exec "$@"
