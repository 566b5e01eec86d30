# Amazon MQ for RabbitMQ: the job queues (priorities need classic queues, which Amazon MQ's RabbitMQ
# offers), dead-letter queues and events. Private, reached over AMQPS (5671) from the EKS nodes only.

resource "aws_security_group" "this" {
  name        = "${var.name}-amqp"
  description = "Amazon MQ for Reverie: AMQPS from the EKS nodes only"
  vpc_id      = var.vpc_id
  tags        = var.tags
}

resource "aws_vpc_security_group_ingress_rule" "amqps" {
  for_each                     = toset(var.client_security_group_ids)
  security_group_id            = aws_security_group.this.id
  description                  = "AMQPS from the EKS nodes"
  referenced_security_group_id = each.value
  ip_protocol                  = "tcp"
  from_port                    = 5671
  to_port                      = 5671
}

resource "aws_vpc_security_group_ingress_rule" "management" {
  for_each                     = toset(var.client_security_group_ids)
  security_group_id            = aws_security_group.this.id
  description                  = "Management API over HTTPS (dead-letter inspection, runbooks)"
  referenced_security_group_id = each.value
  ip_protocol                  = "tcp"
  from_port                    = 443
  to_port                      = 443
}

resource "random_password" "broker" {
  length  = 32
  special = false
}

resource "aws_mq_broker" "this" {
  #checkov:skip=CKV_AWS_209:Amazon MQ for RabbitMQ does not support customer-managed KMS keys (only ActiveMQ does); AWS-owned keys encrypt it at rest.
  broker_name                = var.name
  engine_type                = "RabbitMQ"
  engine_version             = var.engine_version
  host_instance_type         = var.instance_type
  deployment_mode            = var.deployment_mode
  subnet_ids                 = var.deployment_mode == "SINGLE_INSTANCE" ? [var.subnet_ids[0]] : var.subnet_ids
  security_groups            = [aws_security_group.this.id]
  publicly_accessible        = false
  auto_minor_version_upgrade = true
  apply_immediately          = false

  encryption_options {
    use_aws_owned_key = true
  }

  logs {
    general = true
  }

  maintenance_window_start_time {
    day_of_week = "SUNDAY"
    time_of_day = "03:00"
    time_zone   = "UTC"
  }

  user {
    username = var.username
    password = random_password.broker.result
  }

  tags = var.tags
}

locals {
  # amqps://user:pass@host:5671/%2f  (the endpoint Amazon MQ reports is amqps://host:5671)
  amqp_host = trimsuffix(trimprefix(aws_mq_broker.this.instances[0].endpoints[0], "amqps://"), ":5671")
}

resource "aws_secretsmanager_secret" "amqp_url" {
  #checkov:skip=CKV2_AWS_57:Broker passwords are changed through the Amazon MQ API, which Secrets Manager's rotation does not drive; rotation is a runbook (docs/operations.md).
  name        = "${var.name}/amqp-url"
  description = "amqps:// URL with credentials for Reverie (Kubernetes secret key amqp-url)"
  kms_key_id  = var.kms_key_arn
  tags        = var.tags
}

resource "aws_secretsmanager_secret_version" "amqp_url" {
  secret_id     = aws_secretsmanager_secret.amqp_url.id
  secret_string = "amqps://${var.username}:${random_password.broker.result}@${local.amqp_host}:5671/%2f"
}
