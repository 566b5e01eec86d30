# An IAM role for one Kubernetes service account (IRSA), with exactly the S3 object patterns and KMS use
# it needs. Trust is pinned to the namespace/name and the STS audience, so no other pod can assume it.

data "aws_iam_policy_document" "trust" {
  statement {
    actions = ["sts:AssumeRoleWithWebIdentity"]
    principals {
      type        = "Federated"
      identifiers = [var.oidc_provider_arn]
    }
    condition {
      test     = "StringEquals"
      variable = "${var.oidc_issuer}:sub"
      values   = ["system:serviceaccount:${var.namespace}:${var.service_account}"]
    }
    condition {
      test     = "StringEquals"
      variable = "${var.oidc_issuer}:aud"
      values   = ["sts.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "this" {
  name                 = var.role_name
  assume_role_policy   = data.aws_iam_policy_document.trust.json
  max_session_duration = 3600
  tags                 = var.tags
}

data "aws_iam_policy_document" "access" {
  dynamic "statement" {
    for_each = length(var.read_objects) > 0 ? [1] : []
    content {
      sid       = "ReadObjects"
      actions   = ["s3:GetObject", "s3:GetObjectVersion"]
      resources = var.read_objects
    }
  }

  dynamic "statement" {
    for_each = length(var.write_objects) > 0 ? [1] : []
    content {
      sid       = "WriteObjects"
      actions   = ["s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"]
      resources = var.write_objects
    }
  }

  dynamic "statement" {
    for_each = length(var.delete_objects) > 0 ? [1] : []
    content {
      sid       = "DeleteObjects"
      actions   = ["s3:DeleteObject"]
      resources = var.delete_objects
    }
  }

  dynamic "statement" {
    for_each = var.list_buckets
    content {
      sid       = "List${statement.key}"
      actions   = ["s3:ListBucket"]
      resources = [statement.value.bucket_arn]
      dynamic "condition" {
        for_each = length(statement.value.prefixes) > 0 ? [1] : []
        content {
          test     = "StringLike"
          variable = "s3:prefix"
          values   = statement.value.prefixes
        }
      }
    }
  }

  # SSE-KMS: reading needs Decrypt, writing needs GenerateDataKey; only through S3.
  statement {
    sid       = "UseBucketKey"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [var.kms_key_arn]
    condition {
      test     = "StringLike"
      variable = "kms:ViaService"
      values   = ["s3.*.amazonaws.com"]
    }
  }
}

resource "aws_iam_role_policy" "access" {
  name   = "${var.role_name}-access"
  role   = aws_iam_role.this.id
  policy = data.aws_iam_policy_document.access.json
}
