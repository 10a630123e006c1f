"""The claim as the usual alternative writes it: a Python Lambda with boto3.

One conditional update assigns the referral to the caller (the token's subject, as API Gateway's
JWT authorizer passes it) if nobody holds it: 200 for the winner, 409 `taken` for the rest.
`make bench` runs it under the Lambda runtime interface client (awslambdaric), against the same
Runtime API harness and DynamoDB Local as the Rust claim function, and compares the two.

It does less than the Rust claim (no offer or channel check, no per-caller count, no record of a
lost attempt), so the comparison flatters it.
"""

import datetime
import json
import os

import boto3
from botocore.exceptions import ClientError

TABLE = os.environ["TABLE_NAME"]
# Built once per process, outside the handler, as AWS advises.
DYNAMODB = boto3.client("dynamodb")


def _answer(status, body):
    return {
        "statusCode": status,
        "headers": {"content-type": "application/json"},
        "body": json.dumps(body),
    }


def handler(event, context):
    referral_id = event["pathParameters"]["id"]
    agent = event["requestContext"]["authorizer"]["jwt"]["claims"]["sub"]
    now = datetime.datetime.now(datetime.timezone.utc).isoformat()
    try:
        DYNAMODB.update_item(
            TableName=TABLE,
            Key={"PK": {"S": f"REF#{referral_id}"}, "SK": {"S": "REFERRAL"}},
            UpdateExpression="SET assignment = :assignment",
            ConditionExpression=(
                "attribute_exists(PK) AND (attribute_not_exists(assignment) "
                "OR attribute_type(assignment, :null))"
            ),
            ExpressionAttributeValues={
                ":assignment": {
                    "M": {
                        "agentId": {"S": agent},
                        "claimedAt": {"S": now},
                        "channel": {"S": "app"},
                    }
                },
                ":null": {"S": "NULL"},
            },
        )
    except ClientError as e:
        if e.response["Error"]["Code"] == "ConditionalCheckFailedException":
            return _answer(409, {"error": {"code": "taken", "message": "already claimed"}})
        raise
    return _answer(200, {"referralId": referral_id, "agentId": agent})
