#!/usr/bin/env python
"""The least a launch, a status and a cleanup need from EC2, as one plain boto3 process each (benchmark baseline).

tests/bench/bench.py runs this file with a fresh interpreter and times it from outside, so that the figure includes
what every `ansible-playbook` run also pays: the interpreter's start, the imports and the client. The work:
  launch   CreateSecurityGroup, AuthorizeSecurityGroupIngress (the collection's rules), one RunInstances for all
           N machines (the given user data, a 100 GiB encrypted gp2 /dev/sdb, IMDSv2, the cluster's tags), then
           DescribeInstances once a second until all N run;
  status   one DescribeInstances by the cluster tag;
  cleanup  DescribeInstances by the cluster tag, TerminateInstances, DeleteSecurityGroup (retried once a second
           while EC2 answers DependencyViolation); no wait for the machines to be gone.
No key pair or image lookup and no discovery token: the benchmark passes the image and the user data in.
Prints one JSON line: what ran, the seconds spent on imports, on making the client and on the calls.

Usage: plain_launch.py launch|status|cleanup --endpoint-url URL --name NAME
       [--count N --image-id AMI --user-data-file FILE --key-name KEY --ssh-cidr CIDR]
Credentials come from the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY).
"""

from __future__ import annotations

import time

STARTED = time.monotonic()

# pylint: disable=wrong-import-position
import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402

import boto3  # noqa: E402

IMPORTED = time.monotonic()

TAG = "coreos-ec2-cluster"
LIVE = ["pending", "running", "stopping", "stopped"]
WAIT_SECONDS = 600


def group_name(name: str) -> str:
    return f"plain-{name}"


def tagged(ec2, name: str) -> list[dict]:
    reply = ec2.describe_instances(Filters=[{"Name": f"tag:{TAG}", "Values": [name]},
                                            {"Name": "instance-state-name", "Values": LIVE}])
    return [i for r in reply["Reservations"] for i in r["Instances"]]


def launch(ec2, args) -> dict:
    tags = [{"Key": "Name", "Value": args.name}, {"Key": TAG, "Value": args.name}]
    group = ec2.create_security_group(
        GroupName=group_name(args.name), Description=f"Plain boto3 benchmark cluster {args.name}",
        TagSpecifications=[{"ResourceType": "security-group", "Tags": tags}])["GroupId"]
    own = [{"GroupId": group}]
    ec2.authorize_security_group_ingress(GroupId=group, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": args.ssh_cidr, "Description": "SSH"}]},
        {"IpProtocol": "tcp", "FromPort": 2379, "ToPort": 2380, "UserIdGroupPairs": own},
        {"IpProtocol": "tcp", "FromPort": 4001, "ToPort": 4001, "UserIdGroupPairs": own},
        {"IpProtocol": "tcp", "FromPort": 7001, "ToPort": 7001, "UserIdGroupPairs": own},
        {"IpProtocol": "udp", "FromPort": 8285, "ToPort": 8285, "UserIdGroupPairs": own},
        {"IpProtocol": "udp", "FromPort": 8472, "ToPort": 8472, "UserIdGroupPairs": own},
    ])
    with open(args.user_data_file, encoding="utf-8") as f:
        user_data = f.read()
    reservation = ec2.run_instances(
        ImageId=args.image_id, InstanceType=args.instance_type, KeyName=args.key_name,
        MinCount=args.count, MaxCount=args.count, SecurityGroupIds=[group], UserData=user_data,
        BlockDeviceMappings=[{"DeviceName": "/dev/sdb", "Ebs": {
            "VolumeSize": 100, "VolumeType": "gp2", "Encrypted": True, "DeleteOnTermination": True}}],
        MetadataOptions={"HttpEndpoint": "enabled", "HttpTokens": "required"},
        TagSpecifications=[{"ResourceType": "instance", "Tags": tags}, {"ResourceType": "volume", "Tags": tags}])
    ids = [i["InstanceId"] for i in reservation["Instances"]]
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        reply = ec2.describe_instances(InstanceIds=ids)
        states = [i["State"]["Name"] for r in reply["Reservations"] for i in r["Instances"]]
        if len(states) == len(ids) and set(states) == {"running"}:
            return {"machines": len(ids), "user_data_bytes": len(user_data.encode())}
        if time.monotonic() > deadline:
            raise SystemExit(f"not all {len(ids)} machines running after {WAIT_SECONDS} s")
        time.sleep(1)


def status(ec2, args) -> dict:
    states: dict[str, int] = {}
    for i in tagged(ec2, args.name):
        states[i["State"]["Name"]] = states.get(i["State"]["Name"], 0) + 1
    return {"states": states}


def cleanup(ec2, args) -> dict:
    ids = [i["InstanceId"] for i in tagged(ec2, args.name)]
    if ids:
        ec2.terminate_instances(InstanceIds=ids)
    for _attempt in range(WAIT_SECONDS):
        try:
            ec2.delete_security_group(GroupName=group_name(args.name))
            break
        except ec2.exceptions.ClientError as exc:
            if exc.response["Error"]["Code"] != "DependencyViolation":
                raise
            time.sleep(1)
    return {"terminated": len(ids)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["launch", "status", "cleanup"])
    parser.add_argument("--endpoint-url", required=True)
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument("--name", required=True)
    parser.add_argument("--count", type=int, default=3)
    parser.add_argument("--image-id")
    parser.add_argument("--instance-type", default="c4.large")
    parser.add_argument("--key-name", default="coreos-sandbox")
    parser.add_argument("--ssh-cidr", default="203.0.113.0/24")
    parser.add_argument("--user-data-file")
    args = parser.parse_args()
    if args.action == "launch" and not (args.image_id and args.user_data_file):
        parser.error("launch needs --image-id and --user-data-file")
    before_client = time.monotonic()
    ec2 = boto3.client("ec2", endpoint_url=args.endpoint_url, region_name=args.region)
    before_calls = time.monotonic()
    result = {"launch": launch, "status": status, "cleanup": cleanup}[args.action](ec2, args)
    done = time.monotonic()
    result.update(action=args.action, import_seconds=round(IMPORTED - STARTED, 4),
                  client_seconds=round(before_calls - before_client, 4), calls_seconds=round(done - before_calls, 4),
                  inside_seconds=round(done - STARTED, 4))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
