"""The twin is strict where AWS is: racing conditional writes to one DynamoDB item, exactly one wins."""

from __future__ import annotations

import threading

import boto3
import pytest
from moto import mock_aws

from local.moto_strict import StrictMoto


@pytest.fixture
def dynamodb(aws_env):
    with mock_aws(), StrictMoto():
        client = boto3.client("dynamodb")
        client.create_table(TableName="t", BillingMode="PAY_PER_REQUEST",
                            KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
                            AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}])
        yield client


def test_of_racing_conditional_updates_exactly_one_wins(dynamodb):
    writers, items = 4, 40
    for n in range(items):
        dynamodb.put_item(TableName="t", Item={"k": {"S": str(n)}})
    wins = [0] * items
    start = threading.Barrier(writers)

    def write(who: int) -> None:
        start.wait()
        for n in range(items):
            try:
                dynamodb.update_item(TableName="t", Key={"k": {"S": str(n)}}, UpdateExpression="SET w = :w",
                                     ConditionExpression="attribute_not_exists(w)",
                                     ExpressionAttributeValues={":w": {"N": str(who)}})
                wins[n] += 1
            except dynamodb.exceptions.ConditionalCheckFailedException:
                pass

    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert wins == [1] * items


def test_uninstall_restores_moto():
    from moto.dynamodb.models import DynamoDBBackend

    original = DynamoDBBackend.update_item
    with StrictMoto():
        assert DynamoDBBackend.update_item is not original
    assert DynamoDBBackend.update_item is original
