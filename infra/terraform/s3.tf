# Raw media (recordings + metadata JSON) and curated outputs (Parquet, manifests, ops logs,
# model store). Both: versioned, SSE-KMS with the dedicated key, no public access, TLS only.

resource "aws_s3_bucket" "raw" {
  #checkov:skip=CKV_AWS_144:recordings are personal data kept in one region; erasure and retention must reach every copy
  #checkov:skip=CKV_AWS_18:object access is audited by CloudTrail S3 data events (infra/README.md), not server access logs
  bucket = var.raw_bucket_name
}

resource "aws_s3_bucket" "curated" {
  #checkov:skip=CKV_AWS_144:derived from the raw bucket and rebuilt by reprocessing; a replica would be one more copy for erasure to reach
  #checkov:skip=CKV_AWS_18:object access is audited by CloudTrail S3 data events (infra/README.md), not server access logs
  #checkov:skip=CKV2_AWS_62:nothing consumes curated-object events; runs are started from the raw bucket's queue and the DAGs
  bucket = var.curated_bucket_name
}

locals {
  buckets = {
    raw     = aws_s3_bucket.raw
    curated = aws_s3_bucket.curated
  }
}

resource "aws_s3_bucket_ownership_controls" "this" {
  for_each = local.buckets
  bucket   = each.value.id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_public_access_block" "this" {
  for_each = local.buckets
  bucket   = each.value.id

  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_versioning" "this" {
  for_each = local.buckets
  bucket   = each.value.id

  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "this" {
  for_each = local.buckets
  bucket   = each.value.id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = aws_kms_key.data.arn
    }
    # One data key per bucket instead of a KMS call per object.
    bucket_key_enabled = true
  }
}

data "aws_iam_policy_document" "tls_only" {
  for_each = local.buckets

  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [each.value.arn, "${each.value.arn}/*"]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_policy" "this" {
  for_each = local.buckets
  bucket   = each.value.id
  policy   = data.aws_iam_policy_document.tls_only[each.key].json

  depends_on = [aws_s3_bucket_public_access_block.this]
}

# Lifecycle: a backstop to the retention job, never ahead of it (variables.tf, lifecycle_margin_days).
locals {
  raw_expiration_days     = var.retention_raw_max_age_days + var.lifecycle_margin_days
  snippet_expiration_days = var.retention_snippet_max_age_days + var.lifecycle_margin_days
}

# Raw: recordings (and their metadata JSON) expire raw limit + margin after upload, whatever their
# state; the retention DAG deletes processed ones at the limit. On a versioned bucket a delete or
# an expiry only adds a delete marker: the media is gone for good once its noncurrent version
# expires too.
resource "aws_s3_bucket_lifecycle_configuration" "raw" {
  bucket = aws_s3_bucket.raw.id

  rule {
    id     = "recordings-backstop"
    status = "Enabled"

    filter {
      prefix = var.raw_prefix
    }

    expiration {
      days = local.raw_expiration_days
    }
  }

  rule {
    id     = "purge-deleted-versions"
    status = "Enabled"

    filter {}

    noncurrent_version_expiration {
      noncurrent_days = var.raw_noncurrent_days
    }

    abort_incomplete_multipart_upload {
      days_after_initiation = var.abort_multipart_days
    }
  }

  rule {
    id     = "remove-expired-delete-markers"
    status = "Enabled"

    filter {}

    expiration {
      expired_object_delete_marker = true
    }
  }

  depends_on = [aws_s3_bucket_versioning.this]
}

# Curated: results are kept (the retention job applies the text, affect and aggregate limits:
# it must read the manifests to know which calls it may touch). Review snippets have a backstop;
# superseded versions (what retention deleted or rewrote, stale tables), stale delete markers
# and abandoned uploads go.
resource "aws_s3_bucket_lifecycle_configuration" "curated" {
  bucket = aws_s3_bucket.curated.id

  rule {
    id     = "snippets-backstop"
    status = "Enabled"

    filter {
      prefix = local.snippets_prefix
    }

    expiration {
      days = local.snippet_expiration_days
    }
  }

  rule {
    id     = "noncurrent-and-uploads"
    status = "Enabled"

    filter {}

    noncurrent_version_expiration {
      noncurrent_days = var.curated_noncurrent_days
    }

    abort_incomplete_multipart_upload {
      days_after_initiation = var.abort_multipart_days
    }

    expiration {
      expired_object_delete_marker = true
    }
  }

  depends_on = [aws_s3_bucket_versioning.this]
}
