from harness import VPC, run_layer


def test_dev_vpc_two_azs_single_nat_public_and_private(network_run):
    vpc = network_run.one(VPC)
    assert vpc.inputs["numberOfAvailabilityZones"] == 2
    assert vpc.inputs["natGateways"] == {"strategy": "Single"}
    assert vpc.inputs["cidrBlock"] == "10.0.0.0/16"
    assert {s["type"] for s in vpc.inputs["subnetSpecs"]} == {"Public", "Private"}
    assert vpc.inputs["enableDnsHostnames"] is True
    # The free S3 gateway endpoint is on by default; the billed interface endpoints are not.
    assert vpc.inputs["vpcEndpointSpecs"] == [
        {"serviceName": "com.amazonaws.us-east-1.s3", "vpcEndpointType": "Gateway"}]
    assert network_run.of_type("aws:ec2/vpcEndpoint:VpcEndpoint") == []


def test_prod_vpc_three_azs_nat_per_az_and_endpoints(network_prod_run):
    vpc = network_prod_run.one(VPC)
    assert vpc.inputs["numberOfAvailabilityZones"] == 3
    assert vpc.inputs["natGateways"] == {"strategy": "OnePerAz"}
    # S3 is a gateway endpoint on the VPC's route tables (filled in by awsx's Auto strategy).
    assert vpc.inputs["vpcEndpointSpecs"] == [
        {"serviceName": "com.amazonaws.us-east-1.s3", "vpcEndpointType": "Gateway"}
    ]
    assert vpc.inputs["vpcEndpointStrategy"] == "Auto"
    endpoints = network_prod_run.of_type("aws:ec2/vpcEndpoint:VpcEndpoint")
    assert sorted(e.inputs["serviceName"] for e in endpoints) == sorted(
        f"com.amazonaws.us-east-1.{s}"
        for s in ("ecr.api", "ecr.dkr", "sqs", "secretsmanager", "logs", "monitoring")
    )
    sg = network_prod_run.one("aws:ec2/securityGroup:SecurityGroup")
    for e in endpoints:
        assert e.inputs["vpcEndpointType"] == "Interface"
        assert e.inputs["privateDnsEnabled"] is True
        assert e.inputs["subnetIds"] == ["subnet-priv-a", "subnet-priv-b"]
        assert e.inputs["securityGroupIds"] == [f"{sg.name}-id"]
    (rule,) = network_prod_run.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
    assert (rule.inputs["cidrIpv4"], rule.inputs["fromPort"], rule.inputs["toPort"]) == ("10.0.0.0/16", 443, 443)


def test_exports(network_run):
    assert network_run.exports == {
        "vpcId": "vpc-0abc",
        "vpcCidrBlock": "10.0.0.0/16",
        "publicSubnetIds": ["subnet-pub-a", "subnet-pub-b"],
        "privateSubnetIds": ["subnet-priv-a", "subnet-priv-b"],
        "natGatewayStrategy": "Single",
    }


def test_rejects_bad_az_count():
    import pytest

    with pytest.raises(Exception, match="availabilityZones must be 2 or 3"):
        run_layer("network", {"availabilityZones": 4}, stack="bad")


def test_the_s3_gateway_endpoint_can_be_turned_off():
    run = run_layer("network", {"s3GatewayEndpoint": False}, stack="nos3")
    vpc = run.one(VPC)
    assert "vpcEndpointSpecs" not in vpc.inputs and "vpcEndpointStrategy" not in vpc.inputs
