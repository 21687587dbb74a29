"""Emit the CloudTrail event of an AuthorizeSecurityGroupEgress onto the default
EventBridge bus of an emulator, as CloudTrail does on AWS (neither moto nor LocalStack
turns API calls into CloudTrail events). With --open, first make the call itself:
open all outbound traffic of the group to 0.0.0.0/0.

    .venv-moto/bin/python localstack/emit_event.py http://127.0.0.1:5000 sg-0123 --open

The record follows AWS's "CloudTrail record contents" layout; the alerting runbook's
rule routes it to its queue, where `harden watch` picks it up.
"""

import argparse
import datetime
import json
import uuid

import boto3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("endpoint", help="the emulator, e.g. http://127.0.0.1:5000")
    parser.add_argument("group_id", help="the security group opened")
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument("--open", action="store_true", help="open the group first")
    parser.add_argument("--actor", default="mallory", help="the IAM user named as the caller")
    parser.add_argument("--source-ip", default="203.0.113.7")
    args = parser.parse_args()

    session = boto3.session.Session(region_name=args.region)
    kwargs = {"endpoint_url": args.endpoint}
    account = session.client("sts", **kwargs).get_caller_identity()["Account"]
    permission = {"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}
    if args.open:
        session.client("ec2", **kwargs).authorize_security_group_egress(
            GroupId=args.group_id, IpPermissions=[permission]
        )
    request_id = str(uuid.uuid4())
    record = {
        "eventVersion": "1.09",
        "userIdentity": {
            "type": "IAMUser",
            "principalId": "AIDA" + uuid.uuid4().hex[:17].upper(),
            "arn": f"arn:aws:iam::{account}:user/{args.actor}",
            "accountId": account,
            "accessKeyId": "AKIA" + uuid.uuid4().hex[:16].upper(),
            "userName": args.actor,
        },
        "eventTime": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "eventSource": "ec2.amazonaws.com",
        "eventName": "AuthorizeSecurityGroupEgress",
        "awsRegion": args.region,
        "sourceIPAddress": args.source_ip,
        "userAgent": "aws-cli/2.22.0 md/command#ec2.authorize-security-group-egress",
        "requestParameters": {
            "groupId": args.group_id,
            "ipPermissions": {
                "items": [
                    {
                        "ipProtocol": "-1",
                        "groups": {},
                        "ipRanges": {"items": [{"cidrIp": "0.0.0.0/0"}]},
                        "ipv6Ranges": {},
                        "prefixListIds": {},
                    }
                ]
            },
        },
        "responseElements": {"requestId": request_id, "_return": True},
        "requestID": request_id,
        "eventID": str(uuid.uuid4()),
        "readOnly": False,
        "eventType": "AwsApiCall",
        "managementEvent": True,
        "recipientAccountId": account,
        "eventCategory": "Management",
    }
    answer = session.client("events", **kwargs).put_events(
        Entries=[
            {
                "Source": "aws.ec2",
                "DetailType": "AWS API Call via CloudTrail",
                "Detail": json.dumps(record),
            }
        ]
    )
    if answer["FailedEntryCount"]:
        raise SystemExit(f"EventBridge refused the event: {answer['Entries']}")
    print(f"emitted AuthorizeSecurityGroupEgress on {args.group_id} (event {record['eventID']})")


if __name__ == "__main__":
    main()
