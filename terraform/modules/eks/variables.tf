variable "name" {
  description = "Cluster name, e.g. reverie-prod."
  type        = string
}

variable "kubernetes_version" {
  description = "EKS Kubernetes version (scripts/validate-ops validates the manifests against the same minor)."
  type        = string
  default     = "1.31"
}

variable "subnet_ids" {
  description = "Private subnets for the control plane's interfaces and the nodes."
  type        = list(string)
}

variable "public_access_cidrs" {
  description = "CIDRs allowed to reach the public API endpoint; empty keeps the endpoint private only."
  type        = list(string)
  default     = []
}

variable "kms_key_arn" {
  description = "KMS key encrypting Kubernetes Secrets at rest."
  type        = string
}

variable "system_instance_types" {
  description = "Instance types of the system node group (scheduler, KEDA, Prometheus)."
  type        = list(string)
  default     = ["m6i.large"]
}

variable "system_node_count" {
  description = "Desired, min and max size of the system node group."
  type        = object({ desired = number, min = number, max = number })
  default     = { desired = 3, min = 3, max = 6 }
}

variable "gpu_instance_types" {
  description = "Instance types of the GPU node group: one NVIDIA GPU each (k8s/overlays/production sizes the worker for g5.2xlarge)."
  type        = list(string)
  default     = ["g5.2xlarge"]
}

variable "gpu_node_count" {
  description = "Min and max size of the GPU node group; KEDA scales workers, the cluster autoscaler nodes."
  type        = object({ desired = number, min = number, max = number })
  default     = { desired = 2, min = 1, max = 32 }
}

variable "gpu_capacity_type" {
  description = "ON_DEMAND or SPOT. Workers drain on SIGTERM and jobs are redelivered, so SPOT is safe."
  type        = string
  default     = "ON_DEMAND"
}

variable "log_retention_days" {
  description = "Retention of the control-plane logs."
  type        = number
  default     = 365
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
