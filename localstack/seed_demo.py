"""Seeds a deliberately non-compliant demo account into an emulator.

Usage: seed_demo.py ENDPOINT_URL [REGION]

Creates two VPCs (one default group in use by a network interface), a web group with
open IPv4 and IPv6 egress beside narrow rules, a compliant group, and an exempt group;
a flow log on one VPC only; a single-region trail that is not logging; a stopped AWS
Config recorder with an odd name and a narrow recording group; an unattached
unencrypted volume; a running instance and a stopped one, each with an unencrypted root
and data volume.
"""

import sys

import boto3

endpoint = sys.argv[1]
region = sys.argv[2] if len(sys.argv) > 2 else "us-east-1"
def client(service):
    return boto3.client(service, endpoint_url=endpoint, region_name=region,
                        aws_access_key_id="demo", aws_secret_access_key="demo")


ec2 = client("ec2")


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

# A team bucket that already receives one VPC's flow logs and the team's trail.
s3 = client("s3")
team_bucket = "team-logs-demo"
if region == "us-east-1":
    s3.create_bucket(Bucket=team_bucket)
else:
    s3.create_bucket(Bucket=team_bucket, CreateBucketConfiguration={"LocationConstraint": region})
ec2.create_flow_logs(ResourceIds=[app], ResourceType="VPC", TrafficType="ALL",
                     LogDestinationType="s3", LogDestination=f"arn:aws:s3:::{team_bucket}")

# A single-region trail that was never started: fixed in place, not doubled.
client("cloudtrail").create_trail(Name="team-trail", S3BucketName=team_bucket)

# A stopped recorder under an odd name, recording EC2 instances only, no channel.
client("config").put_configuration_recorder(ConfigurationRecorder={
    "name": "legacy-recorder", "roleARN": "arn:aws:iam::123456789012:role/legacy",
    "recordingGroup": {"allSupported": False, "includeGlobalResourceTypes": False,
                       "resourceTypes": ["AWS::EC2::Instance"]}})

# An unattached unencrypted data volume: replaced by an encrypted copy, kept, tagged.
data = ec2.create_volume(AvailabilityZone=f"{region}a", Size=20, VolumeType="gp3",
                         TagSpecifications=[{"ResourceType": "volume",
                                             "Tags": [{"Key": "Name", "Value": "old-data"}]}])["VolumeId"]

# Instances in the app VPC with an unencrypted root (deleted with the instance) and an
# attached data volume (kept): one running (needs allow_stop), one stopped.
image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
app_subnet = ec2.create_subnet(VpcId=app, CidrBlock="10.10.1.0/24",
                               AvailabilityZone=f"{region}a")["Subnet"]["SubnetId"]
app_group = ec2.create_security_group(GroupName="app", Description="app servers",
                                      VpcId=app)["GroupId"]
instances = {}
for name in ("api", "reports"):
    instance = ec2.run_instances(
        ImageId=image, MinCount=1, MaxCount=1, SubnetId=app_subnet,
        SecurityGroupIds=[app_group],
        TagSpecifications=[{"ResourceType": "instance",
                            "Tags": [{"Key": "Name", "Value": name}]}])["Instances"][0]["InstanceId"]
    volume = ec2.create_volume(AvailabilityZone=f"{region}a", Size=10, VolumeType="gp3",
                               TagSpecifications=[{"ResourceType": "volume",
                                                   "Tags": [{"Key": "Name", "Value": f"{name}-data"}]}])["VolumeId"]
    ec2.attach_volume(VolumeId=volume, InstanceId=instance, Device="/dev/sdf")
    instances[name] = instance
ec2.stop_instances(InstanceIds=[instances["reports"]])

print(f"seeded {region}: VPCs {app} and {legacy}; groups web={web}, batch={batch}, break-glass (exempt); flow log on {app}; trail team-trail (not logging); recorder legacy-recorder (stopped); unencrypted volume {data}; instances api={instances['api']} (running), reports={instances['reports']} (stopped)")
