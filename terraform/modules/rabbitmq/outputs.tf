output "broker_id" {
  description = "Amazon MQ broker id."
  value       = aws_mq_broker.this.id
}

output "amqp_endpoint" {
  description = "AMQPS endpoint of the broker."
  value       = aws_mq_broker.this.instances[0].endpoints[0]
}

output "console_url" {
  description = "RabbitMQ management console (dead-letter inspection)."
  value       = aws_mq_broker.this.instances[0].console_url
}

output "amqp_url_secret_arn" {
  description = "Secrets Manager secret holding the amqps:// URL (goes into reverie-secrets/amqp-url)."
  value       = aws_secretsmanager_secret.amqp_url.arn
}

output "security_group_id" {
  description = "Security group of the broker."
  value       = aws_security_group.this.id
}
