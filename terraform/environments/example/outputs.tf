output "cluster_name" {
  description = "aws eks update-kubeconfig --name <this>"
  value       = module.eks.cluster_name
}

output "ecr_repository_url" {
  description = "k8s/overlays/production images[0].newName"
  value       = module.ecr.repository_url
}

output "bucket_names" {
  description = "Buckets by purpose (photos, results, models); REVERIE_S3_BUCKET is the photos bucket."
  value       = module.storage.bucket_names
}

output "scheduler_role_arn" {
  description = "Annotation eks.amazonaws.com/role-arn of ServiceAccount reverie-scheduler."
  value       = module.scheduler_role.role_arn
}

output "worker_role_arn" {
  description = "Annotation eks.amazonaws.com/role-arn of ServiceAccount reverie-worker."
  value       = module.worker_role.role_arn
}

output "amqp_url_secret_arn" {
  description = "Secrets Manager secret to copy into reverie-secrets/amqp-url."
  value       = module.rabbitmq.amqp_url_secret_arn
}

output "redis_url_secret_arn" {
  description = "Secrets Manager secret to copy into reverie-secrets/redis-url."
  value       = module.redis.redis_url_secret_arn
}

output "rabbitmq_console_url" {
  description = "RabbitMQ management console (dead letters)."
  value       = module.rabbitmq.console_url
}

output "kms_key_arn" {
  description = "The farm's KMS key."
  value       = aws_kms_key.farm.arn
}

output "network_policy_vpc_cidr" {
  description = "CIDR for the farm-egress NetworkPolicy patch in k8s/overlays/production."
  value       = var.vpc_cidr
}
