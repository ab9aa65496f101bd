output "raw_bucket" {
  value = aws_s3_bucket.raw.bucket
}

output "curated_bucket" {
  value = aws_s3_bucket.curated.bucket
}

output "model_store_uri" {
  description = "Where production model weights go (read by Ray workers)."
  value       = "s3://${aws_s3_bucket.curated.bucket}/${var.model_prefix}"
}

output "kms_key_arn" {
  value = aws_kms_key.data.arn
}

output "landing_queue_url" {
  value = aws_sqs_queue.landing.id
}

output "landing_queue_arn" {
  value = aws_sqs_queue.landing.arn
}

output "landing_dlq_url" {
  value = aws_sqs_queue.landing_dlq.id
}

output "role_arns" {
  value = {
    airflow  = aws_iam_role.airflow.arn
    ray      = aws_iam_role.ray.arn
    ray_head = one(aws_iam_role.ray_head[*].arn)
    analyst  = aws_iam_role.analyst.arn
  }
}

output "instance_profile_arns" {
  description = "For infra/ray/cluster.yaml (IamInstanceProfile) and Airflow on EC2; empty under IRSA."
  value = {
    for name, arn in {
      airflow    = one(aws_iam_instance_profile.airflow[*].arn)
      ray_head   = one(aws_iam_instance_profile.ray_head[*].arn)
      ray_worker = one(aws_iam_instance_profile.ray_worker[*].arn)
    } : name => arn if arn != null
  }
}

output "policy_arns" {
  description = "The managed policies, to attach elsewhere (MWAA execution role, SSO permission sets, the recording system for ingest)."
  value       = { for k, p in aws_iam_policy.this : k => p.arn }
}

output "pipeline_env" {
  description = "CALLAFFECT_* variables that point the pipeline (Airflow) at these resources."
  value = {
    CALLAFFECT_S3__REGION         = var.region
    CALLAFFECT_S3__RAW_BUCKET     = aws_s3_bucket.raw.bucket
    CALLAFFECT_S3__RAW_PREFIX     = var.raw_prefix
    CALLAFFECT_S3__CURATED_BUCKET = aws_s3_bucket.curated.bucket
    CALLAFFECT_S3__CURATED_PREFIX = var.curated_prefix
    CALLAFFECT_S3__OPS_PREFIX     = var.ops_prefix
  }
}
