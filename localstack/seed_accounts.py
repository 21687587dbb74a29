"""Seeds three member accounts of an emulated organisation for `harden enforce`.

Usage: seed_accounts.py ENDPOINT_URL

In each of 111111111111 (sandbox), 222222222222 (stage) and 333333333333 (prod), reached
with STS AssumeRole into OrganizationAccountAccessRole as harden reaches them (moto keeps
accounts apart by the credentials AssumeRole gives), in us-east-1 and eu-west-1: a VPC
with an "app" security group, whose egress is open to the internet as every new group's
is; the default VPC's and the new VPC's default groups are open too. EBS encryption by
default is on everywhere except in the stage account's eu-west-1.
"""

import sys

import boto3

endpoint = sys.argv[1]
accounts = {"111111111111": "sandbox", "222222222222": "stage", "333333333333": "prod"}
regions = ["us-east-1", "eu-west-1"]

sts = boto3.client("sts", endpoint_url=endpoint, region_name="us-east-1",
                   aws_access_key_id="demo", aws_secret_access_key="demo")
for n, (account, name) in enumerate(accounts.items()):
    credentials = sts.assume_role(
        RoleArn=f"arn:aws:iam::{account}:role/OrganizationAccountAccessRole",
        RoleSessionName="seed")["Credentials"]
    for m, region in enumerate(regions):
        ec2 = boto3.client("ec2", endpoint_url=endpoint, region_name=region,
                           aws_access_key_id=credentials["AccessKeyId"],
                           aws_secret_access_key=credentials["SecretAccessKey"],
                           aws_session_token=credentials["SessionToken"])
        vpc = ec2.create_vpc(CidrBlock=f"10.{50 + n}.{m}.0/24")["Vpc"]["VpcId"]
        ec2.create_security_group(GroupName="app", Description="app", VpcId=vpc)
        if not (name == "stage" and region == "eu-west-1"):
            ec2.enable_ebs_encryption_by_default()
    print(f"seeded {name} ({account})")
