"""Offline checks of template.yaml, run by check-template (which lints it with cfn-lint first).

    python check_template.py expand template.yaml expanded.json
        The SAM transform, offline (aws-sam-translator): plain CloudFormation out.
    python check_template.py stack expanded.json
        Creates the expanded stack in an in-process moto server on 127.0.0.1 (a port the kernel
        picks), once per DynamoDbAccess value, and checks what came out through the EC2, Lambda,
        DynamoDB and IAM APIs: subnets, routes, the gateway endpoint or NAT gateway, the cache
        security group's one rule, the table, the function in the private subnets. moto does
        not implement ElastiCache in CloudFormation, so the cache cluster and its subnet group
        are left out of this part (cfn-lint has checked them).

Every call goes to 127.0.0.1 with dummy credentials; nothing reaches AWS.
"""

import copy
import json
import logging
import os
import sys
import urllib.request

REGION = "us-east-1"
PASSED = 0


def ok(message):
    global PASSED
    PASSED += 1
    print(f"    ok: {message}")


def check(condition, message):
    if not condition:
        print(f"FAILED: {message}", file=sys.stderr)
        sys.exit(1)
    ok(message)


def local_env():
    """Dummy credentials, a region, no user configuration, no instance metadata service."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        os.environ.pop(name, None)
    os.environ.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION=REGION,
        AWS_REGION=REGION,
        AWS_EC2_METADATA_DISABLED="true",
        AWS_CONFIG_FILE="/dev/null",
        AWS_SHARED_CREDENTIALS_FILE="/dev/null",
    )


def expand(template_path, out_path):
    from samtranslator.translator.transform import transform
    from samtranslator.yaml_helper import yaml_parse

    class NoManagedPolicies:
        """The translator asks for AWS managed policy ARNs only for policies named that way."""

        def load(self):
            return {}

    with open(template_path) as f:
        template = yaml_parse(f.read())
    # `sam deploy` uploads the zip and puts its S3 address here; the translator needs one.
    template["Resources"]["PhotoFunction"]["Properties"]["CodeUri"] = (
        "s3://lambda-photo-artifacts/bootstrap.zip"
    )
    expanded = transform(template, {"AWS::Region": REGION}, NoManagedPolicies())
    with open(out_path, "w") as f:
        json.dump(expanded, f, indent=1, sort_keys=True)
    resources = expanded["Resources"]
    types = sorted({r["Type"] for r in resources.values()})
    check("Transform" not in expanded, f"SAM transform expanded offline: {len(resources)} resources")
    check(resources["PhotoFunction"]["Type"] == "AWS::Lambda::Function", "PhotoFunction became an AWS::Lambda::Function")
    architecture = expanded["Parameters"].get("Architecture", {})
    check(
        resources["PhotoFunction"]["Properties"].get("Architectures") == [{"Ref": "Architecture"}]
        and architecture.get("Default") == "arm64"
        and sorted(architecture.get("AllowedValues", [])) == ["arm64", "x86_64"],
        "its architecture is the parameter Architecture: arm64 by default, or x86_64",
    )
    role = resources.get("PhotoFunctionRole", {})
    managed = json.dumps(role.get("Properties", {}).get("ManagedPolicyArns", []))
    check("AWSLambdaVPCAccessExecutionRole" in managed, "its generated role may create network interfaces in the VPC")
    policies = json.dumps(role.get("Properties", {}).get("Policies", []))
    check("dynamodb:Scan" in policies, "its generated role may scan the table")
    print("    resource types: " + ", ".join(t.split("::", 1)[1] for t in types))


def stack(expanded_path):
    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    print(f"    moto server (in process) on {url}")

    def client(service):
        return boto3.client(service, endpoint_url=url, region_name=REGION)

    with open(expanded_path) as f:
        template = json.load(f)
    # What moto cannot create: the ElastiCache resources and what reads their attributes.
    template = copy.deepcopy(template)
    for name in ("CacheCluster", "CacheSubnetGroup"):
        del template["Resources"][name]
    template["Outputs"].pop("ConfigurationEndpoint")
    env = template["Resources"]["PhotoFunction"]["Properties"]["Environment"]["Variables"]
    env["MEMCACHED_CONFIG_ENDPOINT"] = "demo.abc123.cfg.use1.cache.amazonaws.com:11211"
    body = json.dumps(template)

    try:
        # The defaults (arm64) with the gateway endpoint; x86_64 with the NAT gateway: both
        # parameter values are accepted.
        for access, architecture in (("GatewayEndpoint", None), ("NatGateway", "x86_64")):
            print(f"  DynamoDbAccess={access}" + (f" Architecture={architecture}" if architecture else ""))
            urllib.request.urlopen(urllib.request.Request(f"{url}/moto-api/reset", method="POST")).read()
            s3 = client("s3")
            s3.create_bucket(Bucket="lambda-photo-artifacts")
            s3.put_object(Bucket="lambda-photo-artifacts", Key="bootstrap.zip", Body=b"PK\x05\x06" + bytes(18))
            check_stack(client, body, access, architecture)
    finally:
        server.stop()
    print(f"check_template: {PASSED} passed, 0 failed")


def check_stack(client, body, access, architecture):
    cfn, ec2 = client("cloudformation"), client("ec2")
    parameters = [{"ParameterKey": "DynamoDbAccess", "ParameterValue": access}]
    if architecture:
        parameters.append({"ParameterKey": "Architecture", "ParameterValue": architecture})
    cfn.create_stack(
        StackName="photo-demo",
        TemplateBody=body,
        Parameters=parameters,
        Capabilities=["CAPABILITY_IAM"],
    )
    described = cfn.describe_stacks(StackName="photo-demo")["Stacks"][0]
    check(described["StackStatus"] == "CREATE_COMPLETE", f"stack {described['StackStatus']}")
    physical = {
        r["LogicalResourceId"]: r.get("PhysicalResourceId")
        for r in cfn.describe_stack_resources(StackName="photo-demo")["StackResources"]
        if r.get("PhysicalResourceId")
    }
    outputs = {o["OutputKey"]: o["OutputValue"] for o in described.get("Outputs", [])}

    vpc = physical["Vpc"]
    subnets = {s["SubnetId"]: s for s in ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["Subnets"]}
    public = [physical["PublicSubnetA"], physical["PublicSubnetB"]]
    private = [physical["PrivateSubnetA"], physical["PrivateSubnetB"]]
    check(set(subnets) == set(public + private), "4 subnets in the VPC: 2 public, 2 private")
    zones = {subnets[s]["AvailabilityZone"] for s in public}
    check(
        len(zones) == 2 and zones == {subnets[s]["AvailabilityZone"] for s in private},
        f"public and private subnets in the same two availability zones ({', '.join(sorted(zones))})",
    )

    tables = {t["RouteTableId"]: t for t in ec2.describe_route_tables(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["RouteTables"]}
    public_rt, private_rt = tables[physical["PublicRouteTable"]], tables[physical["PrivateRouteTable"]]

    def associated(table):
        # moto records a CloudFormation SubnetRouteTableAssociation in its EC2 backend without
        # listing it under the table's Associations: read both (the server runs in process).
        from moto.core import DEFAULT_ACCOUNT_ID
        from moto.ec2.models import ec2_backends

        listed = {a["SubnetId"] for a in table["Associations"] if a.get("SubnetId")}
        recorded = {
            a.subnet_id
            for a in ec2_backends[DEFAULT_ACCOUNT_ID][REGION].subnet_associations.values()
            if a.route_table_id == table["RouteTableId"]
        }
        return sorted(listed | recorded)

    def default_route(table):
        return next((r for r in table["Routes"] if r.get("DestinationCidrBlock") == "0.0.0.0/0"), None)

    check(associated(public_rt) == sorted(public), "public route table serves both public subnets")
    check(associated(private_rt) == sorted(private), "private route table serves both private subnets")
    route = default_route(public_rt)
    check(route is not None and route.get("GatewayId") == physical["InternetGateway"], "public subnets: 0.0.0.0/0 -> internet gateway")

    endpoints = ec2.describe_vpc_endpoints(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["VpcEndpoints"]
    nats = [n for n in ec2.describe_nat_gateways()["NatGateways"] if n.get("VpcId") == vpc and n["State"] != "deleted"]
    route = default_route(private_rt)
    if access == "GatewayEndpoint":
        check(
            len(endpoints) == 1
            and endpoints[0]["VpcEndpointType"] == "Gateway"
            and endpoints[0]["ServiceName"] == f"com.amazonaws.{REGION}.dynamodb"
            and endpoints[0]["RouteTableIds"] == [private_rt["RouteTableId"]],
            "DynamoDB gateway endpoint on the private route table",
        )
        prefix = [r for r in private_rt["Routes"] if r.get("DestinationPrefixListId")]
        check(
            len(prefix) == 1 and prefix[0].get("GatewayId") == endpoints[0]["VpcEndpointId"],
            f"private subnets: DynamoDB's prefix list {prefix[0]['DestinationPrefixListId'] if prefix else '?'} -> the endpoint",
        )
        check(route is None and not nats, "no NAT gateway, no default route: the private subnets reach nothing else")
    else:
        check(not endpoints, "no VPC endpoint")
        check(
            len(nats) == 1 and nats[0]["SubnetId"] == physical["PublicSubnetA"],
            "one NAT gateway, in public subnet A",
        )
        check(
            route is not None and route.get("NatGatewayId") == nats[0]["NatGatewayId"],
            "private subnets: 0.0.0.0/0 -> the NAT gateway",
        )

    groups = {g["GroupId"]: g for g in ec2.describe_security_groups(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["SecurityGroups"]}
    cache_sg = groups[physical["CacheSecurityGroup"]]
    function_sg = physical["FunctionSecurityGroup"]
    rules = cache_sg["IpPermissions"]
    check(
        len(rules) == 1
        and rules[0]["IpProtocol"] == "tcp"
        and rules[0]["FromPort"] == 11211 == rules[0]["ToPort"]
        and [p["GroupId"] for p in rules[0]["UserIdGroupPairs"]] == [function_sg]
        and not rules[0].get("IpRanges")
        and not rules[0].get("Ipv6Ranges"),
        "cache security group: one inbound rule, tcp 11211 from the function's group only",
    )

    table = client("dynamodb").describe_table(TableName=physical["PhotoTable"])["Table"]
    check(
        table["TableName"] == "Photo" and table["KeySchema"] == [{"AttributeName": "id", "KeyType": "HASH"}],
        "table Photo, hash key id",
    )

    function = client("lambda").get_function_configuration(FunctionName=physical["PhotoFunction"])
    vpc_config = function.get("VpcConfig", {})
    variables = function.get("Environment", {}).get("Variables", {})
    check(
        function["Runtime"] == "provided.al2023"
        and function["Handler"] == "bootstrap"
        and function["Timeout"] == 10,
        # moto creates every function as x86_64 from CloudFormation, whatever its Architectures:
        # the architecture is checked in the expanded template above.
        "function: provided.al2023, handler bootstrap, timeout 10 s",
    )
    check(
        sorted(vpc_config.get("SubnetIds", [])) == sorted(private) and vpc_config.get("SecurityGroupIds") == [function_sg],
        "function in both private subnets, in its own security group",
    )
    check(
        variables.get("TABLE_NAME") == "Photo" and variables.get("MEMCACHED_TLS") == "false" and "MEMCACHED_CONFIG_ENDPOINT" in variables,
        "function environment: MEMCACHED_CONFIG_ENDPOINT, TABLE_NAME=Photo, MEMCACHED_TLS=false",
    )
    check(outputs.get("FunctionName") == physical["PhotoFunction"], f"output FunctionName = {outputs.get('FunctionName')}")


def main():
    local_env()
    if len(sys.argv) == 4 and sys.argv[1] == "expand":
        expand(sys.argv[2], sys.argv[3])
    elif len(sys.argv) == 3 and sys.argv[1] == "stack":
        stack(sys.argv[2])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
