variable "name_prefix" {
  description = "Prefix of every bucket name, e.g. reverie-prod (bucket names are global: include the account or org)."
  type        = string
}

variable "kms_key_arn" {
  description = "KMS key encrypting every object (SSE-KMS). Its key policy must allow the IRSA roles."
  type        = string
}

variable "results_transition_days" {
  description = "Days after which generated images move to STANDARD_IA (read rarely after the first week)."
  type        = number
  default     = 30
}

variable "noncurrent_version_days" {
  description = "Days a replaced or deleted object version is kept (undo window for overwrites and tenant forget)."
  type        = number
  default     = 30
}

variable "access_log_retention_days" {
  description = "Days the S3 server access logs are kept."
  type        = number
  default     = 365
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
