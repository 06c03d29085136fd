#!/bin/sh
# Container entrypoint of the paradex-bus image: every process reports its health under
# <service>.<INSTANCE_ID>; in a container that is the container's hostname (unique per replica),
# which is also what deploy/healthcheck.py looks up.
set -e
: "${INSTANCE_ID:=$(hostname)}"
export INSTANCE_ID
exec "$@"
