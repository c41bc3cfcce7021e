#!/usr/bin/env bash
# docker/entrypoint.sh: the image's entry point.
#
#   (no argument) | run      the stack in the foreground (scripts/media-stack run);
#                            MEDIA_SERVICES picks a part of it (docker/compose.yml)
#   init | status | stop     the same media-stack commands
#   anything else            executed as is (e.g. `bash`)
set -euo pipefail

cd "$(dirname "$(readlink -f "$0")")/.."

case ${1:-run} in
    run|init|status|stop)
        exec scripts/media-stack "${1:-run}" ;;
    *)
        exec "$@" ;;
esac
