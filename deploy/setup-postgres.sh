#!/usr/bin/env bash
# Creates the study's PostgreSQL role and database on this host (run as root, once).
# Usage: deploy/setup-postgres.sh [DBNAME [ROLE]]   — prints the STUDY_DATABASE_URL to use.
set -euo pipefail
db="${1:-study}"
role="${2:-study}"
[[ "$db" =~ ^[a-z_][a-z0-9_]*$ && "$role" =~ ^[a-z_][a-z0-9_]*$ ]] || { echo "names: lower-case letters, digits, _" >&2; exit 1; }
password="$(python3 -c 'import secrets; print(secrets.token_urlsafe(24))')"
runuser -u postgres -- psql -v ON_ERROR_STOP=1 -q <<SQL
DO \$\$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$role') THEN CREATE ROLE $role LOGIN; END IF;
END \$\$;
ALTER ROLE $role PASSWORD '$password';
SQL
runuser -u postgres -- psql -tAc "SELECT 1 FROM pg_database WHERE datname = '$db'" | grep -q 1 \
  || runuser -u postgres -- createdb -O "$role" "$db"
echo "STUDY_DATABASE_URL=postgresql+psycopg://$role:$password@127.0.0.1:5432/$db"
