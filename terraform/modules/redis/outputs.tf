output "primary_endpoint" {
  description = "Primary endpoint address (TLS, port 6379)."
  value       = aws_elasticache_replication_group.this.primary_endpoint_address
}

output "redis_url_secret_arn" {
  description = "Secrets Manager secret holding the rediss:// URL (goes into reverie-secrets/redis-url)."
  value       = aws_secretsmanager_secret.redis_url.arn
}

output "security_group_id" {
  description = "Security group of the cache nodes."
  value       = aws_security_group.this.id
}
