# An example Reverie environment on AWS: storage, cache, broker, EKS with GPU nodes, and one IAM role
# per role of the farm. Copy this directory per environment and set terraform.tfvars (see
# terraform.tfvars.example). docs/operations.md walks through apply and the Kubernetes side.

locals {
  name = "reverie-${var.environment}"
  tags = { "reverie/environment" = var.environment }
}

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}

# --- one key for the farm's data at rest -------------------------------------------------------------

# A key policy: "*" as resource means this key only.
data "aws_iam_policy_document" "kms" {
  #checkov:skip=CKV_AWS_111:Key policy; its resource "*" is the key itself, and the account statement is what lets IAM policies (the IRSA roles') grant use of it.
  #checkov:skip=CKV_AWS_356:Key policy; "*" is the only resource a key policy can name and means this key.
  #checkov:skip=CKV_AWS_109:Key policy; the account root administers its own key, as AWS's default key policy does.
  statement {
    sid       = "AccountAdministers"
    actions   = ["kms:*"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = ["arn:${data.aws_partition.current.partition}:iam::${data.aws_caller_identity.current.account_id}:root"]
    }
  }
  statement {
    sid       = "CloudWatchLogsEncrypts"
    actions   = ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:DescribeKey"]
    resources = ["*"]
    principals {
      type        = "Service"
      identifiers = ["logs.${var.region}.amazonaws.com"]
    }
    condition {
      test     = "ArnLike"
      variable = "kms:EncryptionContext:aws:logs:arn"
      values   = ["arn:${data.aws_partition.current.partition}:logs:${var.region}:${data.aws_caller_identity.current.account_id}:log-group:*"]
    }
  }
  # Node groups launch encrypted volumes through EC2 Auto Scaling's service-linked role.
  statement {
    sid       = "AutoScalingUsesKeyForVolumes"
    actions   = ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:DescribeKey"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = ["arn:${data.aws_partition.current.partition}:iam::${data.aws_caller_identity.current.account_id}:role/aws-service-role/autoscaling.amazonaws.com/AWSServiceRoleForAutoScaling"]
    }
  }
  statement {
    sid       = "AutoScalingGrantsForVolumes"
    actions   = ["kms:CreateGrant"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = ["arn:${data.aws_partition.current.partition}:iam::${data.aws_caller_identity.current.account_id}:role/aws-service-role/autoscaling.amazonaws.com/AWSServiceRoleForAutoScaling"]
    }
    condition {
      test     = "Bool"
      variable = "kms:GrantIsForAWSResource"
      values   = ["true"]
    }
  }
}

resource "aws_kms_key" "farm" {
  description             = "${local.name}: S3 objects, Kubernetes Secrets, cache, logs, volumes, images"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.kms.json
  tags                    = local.tags
}

resource "aws_kms_alias" "farm" {
  name          = "alias/${local.name}"
  target_key_id = aws_kms_key.farm.key_id
}

# --- services ----------------------------------------------------------------------------------------

module "storage" {
  source      = "../../modules/storage"
  name_prefix = var.bucket_prefix
  kms_key_arn = aws_kms_key.farm.arn
  tags        = local.tags
}

module "ecr" {
  source      = "../../modules/ecr"
  name        = "reverie"
  kms_key_arn = aws_kms_key.farm.arn
  tags        = local.tags
}

module "eks" {
  source              = "../../modules/eks"
  name                = local.name
  subnet_ids          = var.private_subnet_ids
  public_access_cidrs = var.api_public_access_cidrs
  kms_key_arn         = aws_kms_key.farm.arn
  gpu_node_count      = var.gpu_node_count
  tags                = local.tags
}

module "redis" {
  source                    = "../../modules/redis"
  name                      = local.name
  vpc_id                    = var.vpc_id
  subnet_ids                = var.private_subnet_ids
  client_security_group_ids = [module.eks.cluster_security_group_id]
  kms_key_arn               = aws_kms_key.farm.arn
  tags                      = local.tags
}

module "rabbitmq" {
  source                    = "../../modules/rabbitmq"
  name                      = local.name
  vpc_id                    = var.vpc_id
  subnet_ids                = var.private_subnet_ids
  client_security_group_ids = [module.eks.cluster_security_group_id]
  deployment_mode           = var.broker_deployment_mode
  kms_key_arn               = aws_kms_key.farm.arn
  tags                      = local.tags
}

# --- identities: least privilege per role ------------------------------------------------------------

locals {
  photos  = module.storage.bucket_arns["photos"]
  results = module.storage.bucket_arns["results"]
  models  = module.storage.bucket_arns["models"]
}

# The scheduler imports libraries and writes their manifests, reads results to answer requests, and
# deletes everything of a tenant on `forget`. It never touches models.
module "scheduler_role" {
  source            = "../../modules/irsa"
  role_name         = "${local.name}-scheduler"
  oidc_provider_arn = module.eks.oidc_provider_arn
  oidc_issuer       = module.eks.oidc_issuer
  namespace         = var.kubernetes_namespace
  service_account   = "reverie-scheduler"
  read_objects      = ["${local.photos}/tenants/*", "${local.results}/tenants/*"]
  write_objects     = ["${local.photos}/tenants/*"]
  delete_objects    = ["${local.photos}/tenants/*", "${local.results}/tenants/*"]
  list_buckets = [
    { bucket_arn = local.photos, prefixes = ["tenants/*"] },
    { bucket_arn = local.results, prefixes = ["tenants/*"] },
  ]
  kms_key_arn = aws_kms_key.farm.arn
  tags        = local.tags
}

# Workers read shards, manifests and models, write analysis and results, and delete nothing.
module "worker_role" {
  source            = "../../modules/irsa"
  role_name         = "${local.name}-worker"
  oidc_provider_arn = module.eks.oidc_provider_arn
  oidc_issuer       = module.eks.oidc_issuer
  namespace         = var.kubernetes_namespace
  service_account   = "reverie-worker"
  read_objects = [
    "${local.photos}/tenants/*/library/*",
    "${local.photos}/tenants/*/shards/*",
    "${local.photos}/tenants/*/analysis/*",
    "${local.results}/tenants/*/results/*",
    "${local.models}/models/*",
  ]
  write_objects = [
    "${local.photos}/tenants/*/analysis/*",
    "${local.results}/tenants/*/results/*",
  ]
  list_buckets = [
    { bucket_arn = local.results, prefixes = ["tenants/*/results/*"] },
    { bucket_arn = local.models, prefixes = ["models/*"] },
  ]
  kms_key_arn = aws_kms_key.farm.arn
  tags        = local.tags
}
