#!/bin/sh
# Write docker-compose.yml's secrets into deploy/secrets/, one random value per file; files that exist are
# kept (PostgreSQL and InfluxDB take their passwords only when they first create their data).
#
# The directory is 0700, so no other user of this host reads the secrets; the files in it are 0644,
# because Docker Compose bind-mounts them into the containers as they are, where the services read them
# as their own users (gridhub, postgres, influxdb, grafana, mosquitto), none of whom owns the host's file.
set -eu
cd "$(dirname "$0")/.."
umask 077
mkdir -p deploy/secrets
chmod 0700 deploy/secrets

# 32 characters of [A-Za-z0-9]: safe in URLs, shells and every service's configuration.
random_secret() {
    LC_ALL=C tr -dc 'A-Za-z0-9' </dev/urandom | head -c 32
}

for name in postgres_password mqtt_gateway_password influxdb_admin_password influxdb_admin_token \
            grafana_admin_password; do
    file="deploy/secrets/$name"
    if [ -s "$file" ]; then
        echo "kept    $file"
    else
        random_secret >"$file"
        echo "created $file"
    fi
    chmod 0644 "$file"
done
