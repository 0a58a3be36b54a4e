#!/bin/bash
# Runs inside LocalStack once it is ready: the queues and topic the apps expect,
# configured like the messaging/ Pulumi layer (FIFO, DLQ with redrive after 5 receives).
set -euo pipefail
FIFO='"FifoQueue":"true","DeduplicationScope":"messageGroup","FifoThroughputLimit":"perMessageGroupId"'
awslocal sqs create-queue --queue-name product-jobs-dlq.fifo --attributes "{\"MessageRetentionPeriod\":\"1209600\",${FIFO}}"
DLQ_ARN=$(awslocal sqs get-queue-attributes --queue-url http://localhost:4566/000000000000/product-jobs-dlq.fifo \
  --attribute-names QueueArn --query Attributes.QueueArn --output text)
awslocal sqs create-queue --queue-name product-jobs.fifo --attributes \
  "{\"VisibilityTimeout\":\"300\",\"ReceiveMessageWaitTimeSeconds\":\"20\",${FIFO},\"RedrivePolicy\":\"{\\\"deadLetterTargetArn\\\":\\\"${DLQ_ARN}\\\",\\\"maxReceiveCount\\\":\\\"5\\\"}\"}"
awslocal sns create-topic --name product-dead-letters
