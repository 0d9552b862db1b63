"""Puts COUNT photos (default 25) in the Photo table, with every attribute type the function
converts: strings, integers, decimals, booleans, null, lists and maps.

    python seed.py http://127.0.0.1:PORT [COUNT] [TABLE]   a local DynamoDB (run-local's moto
                                                           server); creates the table if needed
    python seed.py aws [COUNT] [TABLE]                     your AWS account (the deployed stack's
                                                           table), with your usual credentials

A local endpoint must be on 127.0.0.1 or localhost; `aws` is the only way to reach anything else.
"""

import sys

import boto3

CAMERAS = [
    {"make": "Fujifilm", "model": "X100V"},
    {"make": "Canon", "model": "EOS R6"},
    {"make": "Nikon", "model": "Z6 II"},
]
PLACES = ["harbour", "old town", "forest", "beach", "market"]


def photo(i):
    item = {
        "id": {"S": f"p-{i:03d}"},
        "title": {"S": f"{PLACES[i % len(PLACES)].capitalize()} #{i}"},
        "width": {"N": str(4000 + 16 * i)},
        "height": {"N": str(3000 + 12 * i)},
        "rating": {"N": f"{3 + (i % 5) / 2:.1f}"},
        "public": {"BOOL": i % 3 != 0},
        "tags": {"L": [{"S": PLACES[i % len(PLACES)]}, {"S": "demo"}, {"N": str(i % 7)}]},
        "camera": {"M": {k: {"S": v} for k, v in CAMERAS[i % len(CAMERAS)].items()}},
    }
    if i % 4 == 0:
        item["location"] = {"NULL": True}
    return item


def main():
    if len(sys.argv) < 2:
        sys.exit("usage: seed.py http://127.0.0.1:PORT|aws [COUNT] [TABLE]")
    endpoint = sys.argv[1]
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 25
    table = sys.argv[3] if len(sys.argv) > 3 else "Photo"
    if endpoint == "aws":
        ddb = boto3.client("dynamodb")
    elif endpoint.startswith(("http://127.", "http://localhost")):
        ddb = boto3.client("dynamodb", endpoint_url=endpoint, region_name="us-east-1")
    else:
        sys.exit(f"seed.py: {endpoint} is neither a local endpoint (http://127.0.0.1:PORT) nor `aws`")
    if endpoint != "aws" and table not in ddb.list_tables()["TableNames"]:
        ddb.create_table(
            TableName=table,
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            BillingMode="PAY_PER_REQUEST",
        )
    for i in range(1, count + 1):
        ddb.put_item(TableName=table, Item=photo(i))
    total = ddb.scan(TableName=table, Select="COUNT")["Count"]
    print(f"table {table}: {total} photos")


if __name__ == "__main__":
    main()
