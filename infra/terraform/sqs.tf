# New objects under the raw prefix -> landing queue, for a data-driven start of the landing DAG
# (an Airflow AssetWatcher on the queue; see infra/README.md). Messages that keep failing go to
# the dead-letter queue instead of cycling forever.

resource "aws_sqs_queue" "landing_dlq" {
  name                      = "${local.prefix}-landing-dlq"
  message_retention_seconds = 1209600 # 14 days, the maximum: time to look at what failed
  kms_master_key_id         = aws_kms_key.data.arn
}

resource "aws_sqs_queue" "landing" {
  name                       = "${local.prefix}-landing"
  message_retention_seconds  = 345600 # 4 days: the nightly DAG's listing catches anything older
  visibility_timeout_seconds = var.queue_visibility_timeout_seconds
  receive_wait_time_seconds  = 20 # long polling
  kms_master_key_id          = aws_kms_key.data.arn

  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.landing_dlq.arn
    maxReceiveCount     = var.queue_max_receive_count
  })
}

resource "aws_sqs_queue_redrive_allow_policy" "landing_dlq" {
  queue_url = aws_sqs_queue.landing_dlq.id

  redrive_allow_policy = jsonencode({
    redrivePermission = "byQueue"
    sourceQueueArns   = [aws_sqs_queue.landing.arn]
  })
}

data "aws_iam_policy_document" "landing_queue" {
  statement {
    sid       = "RawBucketPublishes"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.landing.arn]

    principals {
      type        = "Service"
      identifiers = ["s3.amazonaws.com"]
    }

    condition {
      test     = "ArnEquals"
      variable = "aws:SourceArn"
      values   = [local.raw_arn]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_sqs_queue_policy" "landing" {
  queue_url = aws_sqs_queue.landing.id
  policy    = data.aws_iam_policy_document.landing_queue.json
}

resource "aws_s3_bucket_notification" "raw" {
  bucket = aws_s3_bucket.raw.id

  queue {
    id            = "recordings-created"
    queue_arn     = aws_sqs_queue.landing.arn
    events        = ["s3:ObjectCreated:*"]
    filter_prefix = var.raw_prefix
  }

  # S3 checks at creation that it may publish to the queue.
  depends_on = [aws_sqs_queue_policy.landing, aws_kms_key.data]
}
