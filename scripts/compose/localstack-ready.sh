#!/bin/bash
# Runs inside LocalStack once it is ready: the queues and topic the apps expect,
# configured like the messaging/ Pulumi layer (DLQ with redrive after 5 receives).
set -euo pipefail
awslocal sqs create-queue --queue-name product-jobs-dlq --attributes MessageRetentionPeriod=1209600
DLQ_ARN=$(awslocal sqs get-queue-attributes --queue-url http://localhost:4566/000000000000/product-jobs-dlq \
  --attribute-names QueueArn --query Attributes.QueueArn --output text)
awslocal sqs create-queue --queue-name product-jobs --attributes \
  "{\"VisibilityTimeout\":\"300\",\"ReceiveMessageWaitTimeSeconds\":\"20\",\"RedrivePolicy\":\"{\\\"deadLetterTargetArn\\\":\\\"${DLQ_ARN}\\\",\\\"maxReceiveCount\\\":\\\"5\\\"}\"}"
awslocal sns create-topic --name product-dead-letters
