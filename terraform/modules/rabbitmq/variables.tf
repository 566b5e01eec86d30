variable "name" {
  description = "Broker name, e.g. reverie-prod."
  type        = string
}

variable "vpc_id" {
  description = "VPC of the cluster."
  type        = string
}

variable "subnet_ids" {
  description = "Private subnets: two or three (one per availability zone) for a cluster deployment, one for a single instance."
  type        = list(string)
}

variable "client_security_group_ids" {
  description = "Security groups allowed to connect (the EKS nodes': scheduler, workers and KEDA)."
  type        = list(string)
}

variable "instance_type" {
  description = "Broker instance type."
  type        = string
  default     = "mq.m5.large"
}

variable "deployment_mode" {
  description = "CLUSTER_MULTI_AZ (three nodes, quorum) for production, SINGLE_INSTANCE for small environments."
  type        = string
  default     = "CLUSTER_MULTI_AZ"
  validation {
    condition     = contains(["CLUSTER_MULTI_AZ", "SINGLE_INSTANCE"], var.deployment_mode)
    error_message = "deployment_mode must be CLUSTER_MULTI_AZ or SINGLE_INSTANCE."
  }
}

variable "engine_version" {
  description = "RabbitMQ engine version offered by Amazon MQ."
  type        = string
  default     = "3.13"
}

variable "username" {
  description = "Broker user the farm connects as."
  type        = string
  default     = "reverie"
}

variable "kms_key_arn" {
  description = "KMS key for the credentials secret."
  type        = string
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
