"""Seeds a deliberately non-compliant demo account into an emulator.

Usage: seed_demo.py ENDPOINT_URL [REGION]

Creates two VPCs (one default group in use by a network interface), a web group with
open IPv4 and IPv6 egress beside narrow rules, a compliant group, and an exempt group.
"""

import sys

import boto3

endpoint = sys.argv[1]
region = sys.argv[2] if len(sys.argv) > 2 else "us-east-1"
ec2 = boto3.client("ec2", endpoint_url=endpoint, region_name=region,
                   aws_access_key_id="demo", aws_secret_access_key="demo")


def default_group(vpc):
    groups = ec2.describe_security_groups(Filters=[
        {"Name": "vpc-id", "Values": [vpc]}, {"Name": "group-name", "Values": ["default"]}])
    return groups["SecurityGroups"][0]["GroupId"]


app = ec2.create_vpc(CidrBlock="10.10.0.0/16")["Vpc"]["VpcId"]
legacy = ec2.create_vpc(CidrBlock="10.20.0.0/16")["Vpc"]["VpcId"]
subnet = ec2.create_subnet(VpcId=legacy, CidrBlock="10.20.1.0/24")["Subnet"]["SubnetId"]
ec2.create_network_interface(SubnetId=subnet, Groups=[default_group(legacy)],
                             Description="legacy host still on the default group")

web = ec2.create_security_group(GroupName="web", Description="web tier", VpcId=app)["GroupId"]
ec2.authorize_security_group_egress(GroupId=web, IpPermissions=[
    {"IpProtocol": "-1", "Ipv6Ranges": [{"CidrIpv6": "::/0"}]},
    {"IpProtocol": "tcp", "FromPort": 5432, "ToPort": 5432, "IpRanges": [{"CidrIp": "10.0.0.0/8", "Description": "database"}]},
])

batch = ec2.create_security_group(GroupName="batch", Description="batch workers", VpcId=app)["GroupId"]
ec2.authorize_security_group_egress(GroupId=batch, IpPermissions=[
    {"IpProtocol": "udp", "FromPort": 53, "ToPort": 53, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]},
])

ec2.create_security_group(
    GroupName="break-glass", Description="exempt on purpose", VpcId=app,
    TagSpecifications=[{"ResourceType": "security-group",
                        "Tags": [{"Key": "harden:exempt", "Value": "true"}]}])

print(f"seeded {region}: VPCs {app} and {legacy}; groups web={web}, batch={batch}, break-glass (exempt)")
