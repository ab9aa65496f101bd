data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}

locals {
  prefix     = "${var.name}-${var.environment}"
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
  use_irsa   = var.eks_oidc_provider_arn != null

  raw_arn     = aws_s3_bucket.raw.arn
  curated_arn = aws_s3_bucket.curated.arn

  # Curated key layout (pipeline/storage/curated.py, reviews.py): <curated_prefix><table>/..., _manifests/...,
  # snippets/..., _reviews/...
  manifests_prefix = "${var.curated_prefix}_manifests/"
  snippets_prefix  = "${var.curated_prefix}snippets/"
  reviews_prefix   = "${var.curated_prefix}_reviews/"
  reports_prefix   = "${var.curated_prefix}reports/"
  table_prefixes   = [for t in var.curated_tables : "${var.curated_prefix}${t}/"]

  s3_via  = "s3.${var.region}.amazonaws.com"
  sqs_via = "sqs.${var.region}.amazonaws.com"
}

# --- one dedicated key for both buckets and the landing queue --------------------------------

data "aws_iam_policy_document" "kms" {
  # In a key policy, resources = ["*"] means this key only, and the root statement is AWS's
  # default: without it no IAM policy in the account could grant use of the key.
  #checkov:skip=CKV_AWS_109:key policy; "*" is this key, the root statement is AWS's default
  #checkov:skip=CKV_AWS_111:key policy; "*" is this key, the root statement is AWS's default
  #checkov:skip=CKV_AWS_356:key policy; "*" is this key, the root statement is AWS's default
  # Standard root statement: lets IAM policies in this account grant use of the key.
  statement {
    sid       = "AccountAdministers"
    actions   = ["kms:*"]
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${local.account_id}:root"]
    }
  }

  # S3 encrypts the event notifications it sends to the (KMS-encrypted) landing queue.
  statement {
    sid       = "S3PublishesToEncryptedQueue"
    actions   = ["kms:GenerateDataKey", "kms:Decrypt"]
    resources = ["*"]

    principals {
      type        = "Service"
      identifiers = ["s3.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_kms_key" "data" {
  description             = "${local.prefix}: call recordings, curated tables, landing queue"
  enable_key_rotation     = true
  deletion_window_in_days = var.kms_deletion_window_days
  policy                  = data.aws_iam_policy_document.kms.json
}

resource "aws_kms_alias" "data" {
  name          = "alias/${local.prefix}-data"
  target_key_id = aws_kms_key.data.key_id
}
