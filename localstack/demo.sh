#!/usr/bin/env bash
# `make demo`: start moto, seed a non-compliant account, plan, dry-run, apply, show
# that a second plan is empty, show and verify the audit trail, stop moto.
set -euo pipefail
cd "$(dirname "$0")/.."

port="${HARDEN_DEMO_PORT:-5077}"
state=".harden-demo"
endpoint="http://127.0.0.1:$port"
rm -rf "$state"

localstack/emulator.sh start moto "$port" >/dev/null
trap 'localstack/emulator.sh stop moto "$port"' EXIT
localstack/emulator.sh wait moto "$port"

export AWS_ACCESS_KEY_ID=demo AWS_SECRET_ACCESS_KEY=demo AWS_REGION=us-east-1
unset AWS_PROFILE AWS_ENDPOINT_URL
.venv-moto/bin/python localstack/seed_demo.py "$endpoint"

harden() { target/debug/harden --endpoint-url "$endpoint" --state-dir "$state" "$@"; }
say() { printf '\n\033[1m$ harden %s\033[0m\n' "$*"; }

say plan runbooks/
harden plan runbooks/
say dry-run runbooks/
harden dry-run runbooks/ | tail -n 3
# The running instance is listed as needing downtime until stopping it is allowed.
say apply runbooks/ --param allow_stop=true --yes
harden apply runbooks/ --param allow_stop=true --yes
say plan runbooks/ --detailed-exitcode
harden plan runbooks/ --detailed-exitcode
# Within seconds of someone opening a group again: the alerting runbook's rule routes
# the CloudTrail event to its queue, and watch replaces the rule it opened.
web=$(.venv-moto/bin/python -c "import boto3; print(boto3.client('ec2', endpoint_url='$endpoint', region_name='us-east-1').describe_security_groups(Filters=[{'Name': 'group-name', 'Values': ['web']}])['SecurityGroups'][0]['GroupId'])")
printf '\n\033[1m$ localstack/emit_event.py %s %s --open\033[0m\n' "$endpoint" "$web"
.venv-moto/bin/python localstack/emit_event.py "$endpoint" "$web" --open
queue="$endpoint/123456789012/harden-security-events"
say watch --queue "$queue" runbooks/ --policy examples/policy.yaml --until-idle 3
harden watch --queue "$queue" runbooks/ --policy examples/policy.yaml --until-idle 3
say audit show
harden audit show
say audit verify
harden audit verify
printf '\nThe demo state (audit log, run journals) is in %s/.\n' "$state"
