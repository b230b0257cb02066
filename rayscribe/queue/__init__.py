"""The queue path without Ray: job messages, SQS queues, the job store on S3, infrastructure set-up, webhooks."""
