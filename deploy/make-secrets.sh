#!/bin/sh
# Create the secret files docker-compose.yml reads (deploy/secrets/, mode 600), with random
# passwords and tokens. Replace the tenant's Twilio auth token and AudioHook API key / client
# secret with the values from Twilio's console and Genesys Cloud afterwards.
# Usage: deploy/make-secrets.sh [DIR]   (default: the secrets folder next to this script)
set -eu
dir=${1:-$(dirname "$0")/secrets}
mkdir -p "$dir"
umask 077
random() { head -c "$1" /dev/urandom | base64 | tr -d '\n/+=' | cut -c1-"$2"; }
put() { [ -s "$dir/$1" ] || printf '%s\n' "$2" > "$dir/$1"; }
put postgres_password "$(random 32 40)"
put redis_password "$(random 32 40)"
put evidence_url "postgresql+psycopg://cxguard:$(cat "$dir/postgres_password")@postgres:5432/cxguard"
put redis_url "redis://:$(cat "$dir/redis_password")@redis:6379/0"
put metrics_token "$(random 32 40)"
put northwind_twilio_auth_token "$(random 24 32)"
put northwind_audiohook_api_key "$(random 24 32)"
put northwind_audiohook_client_secret "$(head -c 32 /dev/urandom | base64 | tr -d '\n')"
echo "secrets in $dir"
