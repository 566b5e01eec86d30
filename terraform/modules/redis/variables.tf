variable "name" {
  description = "Replication group id, e.g. reverie-prod."
  type        = string
}

variable "vpc_id" {
  description = "VPC of the cluster."
  type        = string
}

variable "subnet_ids" {
  description = "Private subnets for the cache nodes (one per availability zone)."
  type        = list(string)
}

variable "client_security_group_ids" {
  description = "Security groups allowed to connect (the EKS nodes')."
  type        = list(string)
}

variable "node_type" {
  description = "Cache node type. Embeddings are small (a few KiB each): memory decides, not CPU."
  type        = string
  default     = "cache.r7g.large"
}

variable "replicas_per_shard" {
  description = "Replicas of the primary; at least one, for Multi-AZ automatic failover."
  type        = number
  default     = 1
  validation {
    condition     = var.replicas_per_shard >= 1
    error_message = "replicas_per_shard must be at least 1: Multi-AZ failover needs a replica."
  }
}

variable "engine_version" {
  description = "Redis engine version."
  type        = string
  default     = "7.1"
}

variable "kms_key_arn" {
  description = "KMS key for encryption at rest and for the auth token secret."
  type        = string
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
