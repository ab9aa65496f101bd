# Names and prefixes mirror pipeline/settings.py (S3Settings) and pipeline/storage/keys.py and pipeline/storage/curated.py: the
# pipeline is pointed at what this creates through CALLAFFECT_S3__* (see the pipeline_env output).

variable "name" {
  description = "Prefix of every resource name."
  type        = string
  default     = "callaffect"
}

variable "environment" {
  description = "Deployment name, e.g. prod or staging."
  type        = string
  default     = "prod"
}

variable "region" {
  description = "AWS region (S3Settings.region)."
  type        = string
  default     = "us-east-1"
}

variable "tags" {
  description = "Extra tags for every resource."
  type        = map(string)
  default     = {}
}

# --- buckets and key layout ------------------------------------------------------------------

variable "raw_bucket_name" {
  description = "Raw media bucket (S3Settings.raw_bucket). Bucket names are global: set your own."
  type        = string
  default     = "callaffect-raw"
}

variable "curated_bucket_name" {
  description = "Curated tables bucket (S3Settings.curated_bucket). Bucket names are global: set your own."
  type        = string
  default     = "callaffect-curated"
}

variable "raw_prefix" {
  description = "Where recordings land in the raw bucket (S3Settings.raw_prefix)."
  type        = string
  default     = "recordings/"

  validation {
    condition     = endswith(var.raw_prefix, "/")
    error_message = "raw_prefix must end with '/'."
  }
}

variable "curated_prefix" {
  description = "Prefix of tables and manifests in the curated bucket (S3Settings.curated_prefix)."
  type        = string
  default     = ""

  validation {
    condition     = var.curated_prefix == "" || endswith(var.curated_prefix, "/")
    error_message = "curated_prefix must be empty or end with '/'."
  }
}

variable "ops_prefix" {
  description = "Retention deletion logs and operational reports (S3Settings.ops_prefix), at the root of the curated bucket."
  type        = string
  default     = "_ops/"
}

variable "model_prefix" {
  description = "Model store in the curated bucket: weights of the production backends, read by Ray workers."
  type        = string
  default     = "models/"
}

variable "curated_tables" {
  description = "Table folders the pipeline writes under curated_prefix: keep equal to pipeline.schemas.TABLES (a new table needs a new entry, or its writes are denied)."
  type        = list(string)
  default     = ["calls", "speaker_turns", "utterances", "speaker_affect", "speaker_affect_quarters", "qa_flags", "stage_metrics", "audit", "conversation_metrics", "face_tracks", "face_affect", "coaching_affect"]
}

# --- lifecycle -------------------------------------------------------------------------------

# The retention job (pipeline/jobs/retention.py, the callaffect_retention DAG) is the primary:
# it deletes by the call's date and knows which calls are processed. The lifecycle rules are a
# backstop for a stalled job: they fire lifecycle_margin_days after the job's limit, counted from
# upload, and cannot tell a processed recording from one that is not.

variable "retention_raw_max_age_days" {
  description = "Mirror of retention.raw_max_age_days (pipeline/settings.py, default 30): the job deletes raw media of processed calls past it. Keep equal to the deployed setting."
  type        = number
  default     = 30

  validation {
    condition     = var.retention_raw_max_age_days >= 0
    error_message = "retention_raw_max_age_days must be 0 or more."
  }
}

variable "retention_snippet_max_age_days" {
  description = "Mirror of retention.snippet_max_age_days (default 90): the job deletes review snippets past it. Keep equal to the deployed setting."
  type        = number
  default     = 90

  validation {
    condition     = var.retention_snippet_max_age_days >= 0
    error_message = "retention_snippet_max_age_days must be 0 or more."
  }
}

variable "lifecycle_margin_days" {
  description = "Days the lifecycle backstop waits past the job's limit. Raw media expires retention_raw_max_age_days + this after upload, processed or not: an unprocessed or quarantined call must be reprocessed within that time. At least 2: lifecycle counts from upload and rounds to the next midnight UTC, the job counts from the call's date (which a recorder ahead of UTC may write a day early) and runs once a day."
  type        = number
  default     = 14

  validation {
    condition     = var.lifecycle_margin_days >= 2
    error_message = "lifecycle_margin_days must be at least 2."
  }
}

variable "raw_noncurrent_days" {
  description = "Days a deleted or overwritten recording survives as a noncurrent version. The retention DAG's deletes (and the backstop) become final only then. At most lifecycle_margin_days."
  type        = number
  default     = 7
}

variable "curated_noncurrent_days" {
  description = "Days an overwritten or deleted curated object survives as a noncurrent version (manifests rewritten by the quality gate, tables on reprocessing, and what retention deletes or rewrites: text, affect windows, snippets, whole calls). Every curated retention limit is final only this much later. At most lifecycle_margin_days."
  type        = number
  default     = 7
}

variable "abort_multipart_days" {
  description = "Days after which incomplete multipart uploads are aborted in both buckets."
  type        = number
  default     = 7
}

variable "kms_deletion_window_days" {
  description = "Waiting period before the data key is deleted after scheduling its deletion."
  type        = number
  default     = 30
}

# --- notification queue ----------------------------------------------------------------------

variable "queue_visibility_timeout_seconds" {
  description = "How long a received landing message stays hidden before it is delivered again."
  type        = number
  default     = 300
}

variable "queue_max_receive_count" {
  description = "Receives after which a landing message moves to the dead-letter queue."
  type        = number
  default     = 5
}

# --- who assumes the roles -------------------------------------------------------------------

variable "eks_oidc_provider_arn" {
  description = "OIDC provider of the EKS cluster running Airflow and KubeRay: roles are then assumed by service accounts (IRSA). Null: roles are assumed by EC2 and get instance profiles (Ray cluster launcher, Airflow on EC2)."
  type        = string
  default     = null
}

variable "k8s_namespace" {
  description = "Kubernetes namespace of the service accounts (IRSA only)."
  type        = string
  default     = "callaffect"
}

variable "airflow_service_accounts" {
  description = "Airflow service accounts that touch S3/SQS (IRSA only): workers run the tasks, the triggerer runs the landing sensor's trigger."
  type        = list(string)
  default     = ["airflow-worker", "airflow-triggerer"]
}

variable "ray_service_account" {
  description = "Service account of the KubeRay head and worker pods (IRSA only)."
  type        = string
  default     = "callaffect-ray"
}

variable "ray_cluster_name" {
  description = "cluster_name in infra/ray/cluster.yaml: the launcher tags its instances with it, and the head may only stop or terminate instances carrying that tag."
  type        = string
  default     = "callaffect"
}

variable "analyst_principal_arns" {
  description = "Principals (users, roles, SSO permission-set roles) that may assume the analyst role. Empty: the account root, i.e. delegated to IAM policies in this account."
  type        = list(string)
  default     = []
}
