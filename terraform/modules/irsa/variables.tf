variable "role_name" {
  description = "IAM role name, e.g. reverie-prod-worker."
  type        = string
}

variable "oidc_provider_arn" {
  description = "ARN of the EKS cluster's OIDC provider."
  type        = string
}

variable "oidc_issuer" {
  description = "Issuer of the cluster's OIDC provider without https:// (e.g. oidc.eks.eu-west-1.amazonaws.com/id/ABC)."
  type        = string
}

variable "namespace" {
  description = "Kubernetes namespace of the service account."
  type        = string
}

variable "service_account" {
  description = "Kubernetes service account that may assume the role (and only it)."
  type        = string
}

variable "read_objects" {
  description = "Object ARN patterns the role may read (s3:GetObject), e.g. arn:aws:s3:::bucket/tenants/*/shards/*."
  type        = list(string)
  default     = []
}

variable "write_objects" {
  description = "Object ARN patterns the role may write (s3:PutObject, multipart)."
  type        = list(string)
  default     = []
}

variable "delete_objects" {
  description = "Object ARN patterns the role may delete (s3:DeleteObject): tenant forget."
  type        = list(string)
  default     = []
}

variable "list_buckets" {
  description = "Bucket ARNs the role may list (s3:ListBucket), optionally restricted to key prefixes."
  type = list(object({
    bucket_arn = string
    prefixes   = list(string)
  }))
  default = []
}

variable "kms_key_arn" {
  description = "KMS key of the buckets: the role may use it for data keys only."
  type        = string
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
