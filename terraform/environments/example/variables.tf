variable "region" {
  description = "AWS region of the farm."
  type        = string
  default     = "eu-west-1"
}

variable "environment" {
  description = "Environment name, part of every resource name (e.g. prod, staging)."
  type        = string
  default     = "example"
}

variable "bucket_prefix" {
  description = "Globally unique prefix of the S3 bucket names (e.g. acme-reverie-prod)."
  type        = string
}

variable "vpc_id" {
  description = "Existing VPC to deploy into (with private subnets that reach S3 through a gateway endpoint or NAT)."
  type        = string
}

variable "vpc_cidr" {
  description = "CIDR of that VPC; k8s/overlays/production's farm-egress NetworkPolicy must name the same one."
  type        = string
  default     = "10.40.0.0/16"
}

variable "private_subnet_ids" {
  description = "Private subnets, one per availability zone (three for a multi-AZ broker)."
  type        = list(string)
}

variable "api_public_access_cidrs" {
  description = "Operator CIDRs allowed to reach the Kubernetes API; empty keeps it private."
  type        = list(string)
  default     = []
}

variable "kubernetes_namespace" {
  description = "Namespace of the farm (k8s/base sets `reverie`)."
  type        = string
  default     = "reverie"
}

variable "gpu_node_count" {
  description = "GPU node group size."
  type        = object({ desired = number, min = number, max = number })
  default     = { desired = 2, min = 1, max = 32 }
}

variable "broker_deployment_mode" {
  description = "CLUSTER_MULTI_AZ for production, SINGLE_INSTANCE for a small environment."
  type        = string
  default     = "CLUSTER_MULTI_AZ"
}
