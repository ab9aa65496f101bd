# Least-privilege access, one managed policy per job, attached to one role per job:
#   airflow    lists raw, deletes processed raw media (retention), reads curated, writes
#              manifests (quality gate) and _ops/ logs, applies the curated retention limits
#              (rewrites utterances and verdicts, deletes tables, snippets, reviews, manifests),
#              receives from the landing queue
#   ray        reads raw media, writes curated tables, snippets and manifests, reads the model store
#   analyst    reads curated tables and manifests only
#   ingest     writes recordings (for the system that records calls; attach it there)
# Roles are assumed by EKS service accounts (IRSA) when eks_oidc_provider_arn is set, by EC2
# instances otherwise. The policies are outputs too, to attach elsewhere (an MWAA execution
# role, an SSO permission set).

locals {
  oidc_host = local.use_irsa ? element(split("oidc-provider/", var.eks_oidc_provider_arn), 1) : ""

  raw_objects       = "${local.raw_arn}/${var.raw_prefix}*"
  manifest_objects  = "${local.curated_arn}/${local.manifests_prefix}*"
  ops_objects       = "${local.curated_arn}/${var.ops_prefix}*"
  model_objects     = "${local.curated_arn}/${var.model_prefix}*"
  snippet_objects   = "${local.curated_arn}/${local.snippets_prefix}*"
  review_objects    = "${local.curated_arn}/${local.reviews_prefix}*"
  report_objects    = "${local.curated_arn}/${local.reports_prefix}*"
  utterance_objects = "${local.curated_arn}/${var.curated_prefix}utterances/*"
  table_objects     = [for p in local.table_prefixes : "${local.curated_arn}/${p}*"]
  table_list_prefix = [for p in local.table_prefixes : "${p}*"]
}

# --- trust -----------------------------------------------------------------------------------

data "aws_iam_policy_document" "trust" {
  for_each = {
    airflow = [for sa in var.airflow_service_accounts : "system:serviceaccount:${var.k8s_namespace}:${sa}"]
    ray     = ["system:serviceaccount:${var.k8s_namespace}:${var.ray_service_account}"]
  }

  dynamic "statement" {
    for_each = local.use_irsa ? [1] : []

    content {
      actions = ["sts:AssumeRoleWithWebIdentity"]

      principals {
        type        = "Federated"
        identifiers = [var.eks_oidc_provider_arn]
      }

      condition {
        test     = "StringEquals"
        variable = "${local.oidc_host}:aud"
        values   = ["sts.amazonaws.com"]
      }

      condition {
        test     = "StringEquals"
        variable = "${local.oidc_host}:sub"
        values   = each.value
      }
    }
  }

  dynamic "statement" {
    for_each = local.use_irsa ? [] : [1]

    content {
      actions = ["sts:AssumeRole"]

      principals {
        type        = "Service"
        identifiers = ["ec2.amazonaws.com"]
      }
    }
  }
}

data "aws_iam_policy_document" "trust_analyst" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "AWS"
      identifiers = length(var.analyst_principal_arns) > 0 ? var.analyst_principal_arns : ["arn:${local.partition}:iam::${local.account_id}:root"]
    }
  }
}

# --- airflow ---------------------------------------------------------------------------------

data "aws_iam_policy_document" "airflow" {
  statement {
    sid       = "ListRecordings"
    actions   = ["s3:ListBucket"]
    resources = [local.raw_arn]

    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["${var.raw_prefix}*"]
    }
  }

  # Retention: media and metadata JSON of committed calls past the configured age.
  statement {
    sid       = "DeleteProcessedRecordings"
    actions   = ["s3:DeleteObject"]
    resources = [local.raw_objects]
  }

  # Unconditioned: listing manifests, the marts' globs over table folders, and a 404 (not a
  # 403) when a manifest does not exist yet.
  statement {
    sid       = "ListCurated"
    actions   = ["s3:ListBucket"]
    resources = [local.curated_arn]
  }

  statement {
    sid       = "ReadCurated"
    actions   = ["s3:GetObject"]
    resources = concat(local.table_objects, [local.manifest_objects, local.ops_objects, local.review_objects])
  }

  # Quality gate verdicts in manifests; the retention deletion log under _ops/.
  statement {
    sid       = "WriteManifestsAndOps"
    actions   = ["s3:PutObject"]
    resources = [local.manifest_objects, local.ops_objects]
  }

  # The batch driver commits a quarantine manifest itself when a Ray worker died on a call,
  # and that commit removes the call's table files and snippets. Retention deletes affect
  # windows, snippets and, past the aggregate limit, everything of a call (manifest last) and
  # its review records, leases and failure counts.
  statement {
    sid       = "DeleteCallData"
    actions   = ["s3:DeleteObject"]
    resources = concat(local.table_objects, [local.manifest_objects, local.snippet_objects, local.review_objects, local.ops_objects])
  }

  # The nightly trend report (reports/<day>/index.html); erasure deletes and rebuilds a report
  # that quotes an erased call.
  statement {
    sid       = "WriteReports"
    actions   = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"]
    resources = [local.report_objects]
  }

  # Erasure (GDPR Art. 17) reaches every version: it lists versions, reads old versions of
  # metadata sidecars (to find a subject's calls) and of shared logs (to rewrite them), and
  # deletes each version and delete marker of the call's objects in both buckets.
  statement {
    sid       = "EraseEveryVersion"
    actions   = ["s3:ListBucketVersions"]
    resources = [local.raw_arn, local.curated_arn]
  }

  statement {
    sid     = "EraseEveryVersionObjects"
    actions = ["s3:GetObject", "s3:GetObjectVersion", "s3:DeleteObject", "s3:DeleteObjectVersion"]
    resources = concat([local.raw_objects], local.table_objects,
    [local.manifest_objects, local.snippet_objects, local.review_objects, local.ops_objects, local.report_objects])
  }

  # Retention past the text limit: utterances rewritten with text null, verdict comments emptied.
  statement {
    sid       = "RewriteWords"
    actions   = ["s3:PutObject"]
    resources = [local.utterance_objects, "${local.curated_arn}/${local.reviews_prefix}verdicts/*"]
  }

  statement {
    sid = "ConsumeLandingQueue"
    actions = [
      "sqs:ReceiveMessage",
      "sqs:DeleteMessage",
      "sqs:ChangeMessageVisibility",
      "sqs:GetQueueAttributes",
      "sqs:GetQueueUrl",
    ]
    resources = [aws_sqs_queue.landing.arn]
  }

  statement {
    sid       = "UseDataKey"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [aws_kms_key.data.arn]

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = [local.s3_via, local.sqs_via]
    }
  }
}

# --- ray workers -----------------------------------------------------------------------------

data "aws_iam_policy_document" "ray" {
  # Unconditioned: a worker HEADs the optional <call_id>.json, and S3 answers a missing key with
  # 404 only to callers that may list the bucket (403 otherwise, which fails the call).
  statement {
    sid       = "ListRaw"
    actions   = ["s3:ListBucket"]
    resources = [local.raw_arn]
  }

  statement {
    sid       = "ReadRecordings"
    actions   = ["s3:GetObject"]
    resources = [local.raw_objects]
  }

  # A driver started on the cluster (ray.address = auto) lists manifests to find pending calls;
  # a commit lists the call's snippets to drop those of flags a re-run no longer has.
  statement {
    sid       = "ListManifestsAndModels"
    actions   = ["s3:ListBucket"]
    resources = [local.curated_arn]

    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["${local.manifests_prefix}*", "${var.model_prefix}*", "${local.snippets_prefix}*"]
    }
  }

  statement {
    sid       = "ReadModelStore"
    actions   = ["s3:GetObject"]
    resources = [local.model_objects]
  }

  # Commit: one Parquet file per table and the review snippets, then the manifest; tables and
  # snippets a re-run no longer produces are deleted.
  statement {
    sid       = "CommitCalls"
    actions   = ["s3:PutObject"]
    resources = concat(local.table_objects, [local.manifest_objects, local.snippet_objects])
  }

  statement {
    sid       = "DeleteStaleTables"
    actions   = ["s3:DeleteObject"]
    resources = concat(local.table_objects, [local.snippet_objects])
  }

  statement {
    sid       = "UseDataKey"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [aws_kms_key.data.arn]

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = [local.s3_via]
    }
  }
}

# The cluster launcher's head starts and stops its own workers (EC2 mode only; under KubeRay
# the operator does this through Kubernetes).
data "aws_iam_policy_document" "ray_autoscaler" {
  # Describe calls have no resource-level permissions.
  statement {
    sid = "DescribeForLaunch"
    actions = [
      "ec2:DescribeInstances",
      "ec2:DescribeInstanceTypes",
      "ec2:DescribeImages",
      "ec2:DescribeSubnets",
      "ec2:DescribeSecurityGroups",
    ]
    resources = ["*"]
  }

  # RunInstances authorises every resource a launch touches: this account's instances, volumes,
  # network interfaces, subnets, security groups, key pairs and spot requests in this region,
  # and images and snapshots, whose ARNs name no account (public AMIs).
  statement {
    sid     = "LaunchWorkers"
    actions = ["ec2:RunInstances"]
    resources = [
      "arn:${local.partition}:ec2:${var.region}:${local.account_id}:*",
      "arn:${local.partition}:ec2:${var.region}::image/*",
      "arn:${local.partition}:ec2:${var.region}::snapshot/*",
    ]
  }

  # The launcher tags an instance at launch (ray-cluster-name, which the next statement relies
  # on), later only its own instances (node status).
  statement {
    sid       = "TagAtLaunch"
    actions   = ["ec2:CreateTags"]
    resources = ["arn:${local.partition}:ec2:${var.region}:${local.account_id}:instance/*"]

    condition {
      test     = "StringEquals"
      variable = "ec2:CreateAction"
      values   = ["RunInstances"]
    }
  }

  statement {
    sid       = "ManageOwnWorkers"
    actions   = ["ec2:CreateTags", "ec2:StartInstances", "ec2:StopInstances", "ec2:TerminateInstances"]
    resources = ["arn:${local.partition}:ec2:${var.region}:${local.account_id}:instance/*"]

    condition {
      test     = "StringEquals"
      variable = "ec2:ResourceTag/ray-cluster-name"
      values   = [var.ray_cluster_name]
    }
  }

  statement {
    sid       = "PassWorkerRole"
    actions   = ["iam:PassRole"]
    resources = [aws_iam_role.ray.arn]

    condition {
      test     = "StringEquals"
      variable = "iam:PassedToService"
      values   = ["ec2.amazonaws.com"]
    }
  }
}

# --- analysts and ingest ---------------------------------------------------------------------

data "aws_iam_policy_document" "analyst" {
  statement {
    sid       = "ListTables"
    actions   = ["s3:ListBucket"]
    resources = [local.curated_arn]

    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = concat(local.table_list_prefix, ["${local.manifests_prefix}*"])
    }
  }

  statement {
    sid       = "ReadTables"
    actions   = ["s3:GetObject"]
    resources = concat(local.table_objects, [local.manifest_objects])
  }

  statement {
    sid       = "DecryptTables"
    actions   = ["kms:Decrypt"]
    resources = [aws_kms_key.data.arn]

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = [local.s3_via]
    }
  }
}

data "aws_iam_policy_document" "ingest" {
  statement {
    sid       = "UploadRecordings"
    actions   = ["s3:PutObject"]
    resources = [local.raw_objects]
  }

  statement {
    sid       = "EncryptRecordings"
    actions   = ["kms:GenerateDataKey"]
    resources = [aws_kms_key.data.arn]

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = [local.s3_via]
    }
  }
}

# --- policies, roles, instance profiles ------------------------------------------------------

locals {
  policy_documents = {
    airflow        = data.aws_iam_policy_document.airflow.json
    ray            = data.aws_iam_policy_document.ray.json
    ray-autoscaler = data.aws_iam_policy_document.ray_autoscaler.json
    analyst        = data.aws_iam_policy_document.analyst.json
    ingest         = data.aws_iam_policy_document.ingest.json
  }
}

resource "aws_iam_policy" "this" {
  for_each = local.policy_documents
  name     = "${local.prefix}-${each.key}"
  policy   = each.value
}

resource "aws_iam_role" "airflow" {
  name               = "${local.prefix}-airflow"
  assume_role_policy = data.aws_iam_policy_document.trust["airflow"].json
}

resource "aws_iam_role_policy_attachment" "airflow" {
  role       = aws_iam_role.airflow.name
  policy_arn = aws_iam_policy.this["airflow"].arn
}

# Ray workers (both worker groups); under KubeRay also the head, which then needs nothing else.
resource "aws_iam_role" "ray" {
  name               = "${local.prefix}-ray"
  assume_role_policy = data.aws_iam_policy_document.trust["ray"].json
}

resource "aws_iam_role_policy_attachment" "ray" {
  role       = aws_iam_role.ray.name
  policy_arn = aws_iam_policy.this["ray"].arn
}

# The cluster launcher's head: the workers' access plus launching them (EC2 mode only).
resource "aws_iam_role" "ray_head" {
  count              = local.use_irsa ? 0 : 1
  name               = "${local.prefix}-ray-head"
  assume_role_policy = data.aws_iam_policy_document.trust["ray"].json
}

resource "aws_iam_role_policy_attachment" "ray_head" {
  for_each   = local.use_irsa ? toset([]) : toset(["ray", "ray-autoscaler"])
  role       = aws_iam_role.ray_head[0].name
  policy_arn = aws_iam_policy.this[each.key].arn
}

resource "aws_iam_role" "analyst" {
  name               = "${local.prefix}-analyst"
  assume_role_policy = data.aws_iam_policy_document.trust_analyst.json
}

resource "aws_iam_role_policy_attachment" "analyst" {
  role       = aws_iam_role.analyst.name
  policy_arn = aws_iam_policy.this["analyst"].arn
}

resource "aws_iam_instance_profile" "airflow" {
  count = local.use_irsa ? 0 : 1
  name  = "${local.prefix}-airflow"
  role  = aws_iam_role.airflow.name
}

resource "aws_iam_instance_profile" "ray_worker" {
  count = local.use_irsa ? 0 : 1
  name  = "${local.prefix}-ray-worker"
  role  = aws_iam_role.ray.name
}

resource "aws_iam_instance_profile" "ray_head" {
  count = local.use_irsa ? 0 : 1
  name  = "${local.prefix}-ray-head"
  role  = aws_iam_role.ray_head[0].name
}
