# Reverie's object storage: tenants' photo libraries (shards, manifests, analysis), generated results,
# and model weights. Every bucket is private, encrypted with the farm's KMS key, versioned (a retried job
# overwrites its own outputs; versions make that and tenant deletions recoverable for a while), reachable
# only over TLS, and logged to a separate access-log bucket.

locals {
  buckets = {
    photos  = "${var.name_prefix}-photos"
    results = "${var.name_prefix}-results"
    models  = "${var.name_prefix}-models"
  }
}

# --- access logs -------------------------------------------------------------------------------------

resource "aws_s3_bucket" "logs" {
  #checkov:skip=CKV_AWS_144:Cross-region replication of access logs is not required; they are audit copies, not data.
  #checkov:skip=CKV2_AWS_62:Nothing consumes events of the log bucket.
  #checkov:skip=CKV_AWS_18:This is the access-log bucket itself; logging it into itself would loop.
  #checkov:skip=CKV_AWS_145:S3 server access log delivery does not support SSE-KMS target buckets; it uses SSE-S3 (AES-256).
  bucket = "${var.name_prefix}-access-logs"
  tags   = var.tags
}

resource "aws_s3_bucket_public_access_block" "logs" {
  bucket                  = aws_s3_bucket.logs.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "logs" {
  bucket = aws_s3_bucket.logs.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_versioning" "logs" {
  bucket = aws_s3_bucket.logs.id
  versioning_configuration {
    status = "Enabled"
  }
}

# S3 server access logging can only deliver into buckets encrypted with SSE-S3, not SSE-KMS.
resource "aws_s3_bucket_server_side_encryption_configuration" "logs" {
  bucket = aws_s3_bucket.logs.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "logs" {
  bucket = aws_s3_bucket.logs.id
  rule {
    id     = "expire-access-logs"
    status = "Enabled"
    filter {}
    expiration {
      days = var.access_log_retention_days
    }
    noncurrent_version_expiration {
      noncurrent_days = 7
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }
}

# --- data buckets ------------------------------------------------------------------------------------

resource "aws_s3_bucket" "data" {
  #checkov:skip=CKV_AWS_144:Cross-region replication is an availability choice per environment; photos are re-importable from tenants' sources and results re-renderable from their provenance.
  #checkov:skip=CKV2_AWS_62:No consumer of S3 event notifications exists; the farm is driven by its queues.
  for_each = local.buckets
  bucket   = each.value
  tags     = merge(var.tags, { "reverie/purpose" = each.key })
}

resource "aws_s3_bucket_public_access_block" "data" {
  for_each                = aws_s3_bucket.data
  bucket                  = each.value.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "data" {
  for_each = aws_s3_bucket.data
  bucket   = each.value.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_versioning" "data" {
  for_each = aws_s3_bucket.data
  bucket   = each.value.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "data" {
  for_each = aws_s3_bucket.data
  bucket   = each.value.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = var.kms_key_arn
    }
    # One data key per bucket rather than per object: far fewer KMS calls for many small images.
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_logging" "data" {
  for_each      = aws_s3_bucket.data
  bucket        = each.value.id
  target_bucket = aws_s3_bucket.logs.id
  target_prefix = "${each.key}/"
}

# Lifecycle per purpose. Photos: shards are rewritten on re-import, old versions only need an undo
# window. Results: read in the first days, rarely afterwards. Models: keyed by content hash and never
# overwritten; old versions are kept longer for rollbacks.
locals {
  lifecycle = {
    photos  = { transition_days = null, noncurrent_days = var.noncurrent_version_days }
    results = { transition_days = var.results_transition_days, noncurrent_days = var.noncurrent_version_days }
    models  = { transition_days = null, noncurrent_days = 90 }
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "data" {
  for_each = aws_s3_bucket.data
  bucket   = each.value.id
  rule {
    id     = "${each.key}-lifecycle"
    status = "Enabled"
    filter {}
    dynamic "transition" {
      for_each = local.lifecycle[each.key].transition_days == null ? [] : [local.lifecycle[each.key].transition_days]
      content {
        days          = transition.value
        storage_class = "STANDARD_IA"
      }
    }
    noncurrent_version_expiration {
      noncurrent_days = local.lifecycle[each.key].noncurrent_days
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 2
    }
  }
}

# Every bucket refuses plain HTTP.
data "aws_iam_policy_document" "tls_only" {
  for_each = merge(local.buckets, { logs = aws_s3_bucket.logs.bucket })
  statement {
    sid     = "DenyInsecureTransport"
    effect  = "Deny"
    actions = ["s3:*"]
    resources = [
      "arn:aws:s3:::${each.value}",
      "arn:aws:s3:::${each.value}/*",
    ]
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
  dynamic "statement" {
    for_each = each.key == "logs" ? [1] : []
    content {
      sid       = "AllowS3ServerAccessLogs"
      effect    = "Allow"
      actions   = ["s3:PutObject"]
      resources = ["arn:aws:s3:::${each.value}/*"]
      principals {
        type        = "Service"
        identifiers = ["logging.s3.amazonaws.com"]
      }
    }
  }
}

resource "aws_s3_bucket_policy" "data" {
  for_each = aws_s3_bucket.data
  bucket   = each.value.id
  policy   = data.aws_iam_policy_document.tls_only[each.key].json
  # Policies go on after the public access block, which would otherwise race with them.
  depends_on = [aws_s3_bucket_public_access_block.data]
}

resource "aws_s3_bucket_policy" "logs" {
  bucket     = aws_s3_bucket.logs.id
  policy     = data.aws_iam_policy_document.tls_only["logs"].json
  depends_on = [aws_s3_bucket_public_access_block.logs]
}
